"""Training: one loop for every registered method (loop.py)."""
