"""Dev-only scaffolding for the demo, the tests, bench and chaos (seed rows, local servers, helpers): no
production image carries it (not the Modal images, not the Prefect Managed pull)."""
