"""The JSON APIs: operators' and the company's systems' API (API keys), and shared pieces."""
