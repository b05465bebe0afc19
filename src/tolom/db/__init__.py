"""Tables, the engine and the migrations."""
