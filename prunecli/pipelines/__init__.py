"""Pipelines: what the CLI, the demo, bench/ and Python users call to prune, compact and export a model."""
