"""Check and pay, independent of any agent protocol: the rules live here, once."""
