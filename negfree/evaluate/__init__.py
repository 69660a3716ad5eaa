"""Evaluation protocols: lm-eval suites (hub and offline local tasks), AlpacaEval,
BLEU/ROUGE. One JSON per (run, protocol), with its samples beside it."""
