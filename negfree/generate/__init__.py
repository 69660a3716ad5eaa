"""Negative generation: sampled answers of the base model per prompt, sharded and resumable,
with vLLM or transformers (negatives.py)."""
