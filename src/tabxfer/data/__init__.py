"""Data layer: the canonical trip schema, loaders for real trip records, the synthetic corpus."""
