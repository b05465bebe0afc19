"""Browser journeys: Playwright driving Debian's Chromium against a live Tolom server."""
