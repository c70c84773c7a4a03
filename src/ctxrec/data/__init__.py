"""Data layer: schema, readers with column mappings, built-in datasets, splits, simulator."""
