"""What every HTTP adapter (agent gateways, operator API, back office) shares: who the
client is, and how much of a request body we are willing to read."""
