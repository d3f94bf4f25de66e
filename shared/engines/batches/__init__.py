"""Batches: units of enrichment or send work over a client's leads, and their console read model."""
