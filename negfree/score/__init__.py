"""Reference scoring: the frozen reference model's log-probabilities of every answer,
sharded and resumable, gathered into one reference table (reference.py)."""
