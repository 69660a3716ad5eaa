"""The loss library: one registry of small pure loss functions (see core.py)."""
from negfree.losses import negative_free, preference  # noqa: F401  (import registers the losses)
from negfree.losses.core import REGISTRY, HParam, LossInputs, LossOutput, Method, Seq, get_method
from negfree.losses.negative_free import asft_align, bnf_sequence_loss, dft_update_log_u, ift_token_weights

__all__ = ["REGISTRY", "HParam", "LossInputs", "LossOutput", "Method", "Seq", "get_method",
           "asft_align", "bnf_sequence_loss", "dft_update_log_u", "ift_token_weights"]
