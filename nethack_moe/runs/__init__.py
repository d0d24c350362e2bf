"""A run on disk: the run directory, checkpoints, resume, and reading ``metrics.jsonl`` back."""
