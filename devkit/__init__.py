"""Dev-only tools: seed rows, local servers and helpers for tests, bench, chaos and the demo; no production image carries this package."""
