"""Foundations every layer may import, and that import nothing above them: atomic files and
JSONL (io), model loading and dtypes (models), per-token log-probabilities (logprobs),
batch layout shared by scoring and training (batching), one-line errors (errors), the names
shared by the DAG and the report (naming), resume fingerprints (fingerprint), the vLLM engine
that negative generation and the judged answers share (vllm_engine)."""
