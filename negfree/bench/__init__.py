"""Measurement: `negfree bench data|generate|score|train` (each module is one subcommand)
and `make gpu-check` (gpu_check.py). Imports the stages it measures; nothing imports it."""
