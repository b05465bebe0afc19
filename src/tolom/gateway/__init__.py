"""Agent protocol adapters: each parses its protocol, calls the core, renders the answer."""
