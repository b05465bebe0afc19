"""Payment agents: their credentials, address allow-lists, services and limits."""
