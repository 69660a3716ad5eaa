"""negfree: fine-tuning LLMs without preference data, reproduced and ablated."""
__version__ = "0.1.0"
