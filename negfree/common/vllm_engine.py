"""vLLM, shared by the stages that sample from a model: negative generation
(``negfree.generate.negatives``) and the judged benchmarks' answers
(``negfree.evaluate.judged.answers``), which are siblings and may not import each other.

:func:`vllm_missing` says why vLLM cannot run here (no CUDA GPU, no package),
:func:`check_vllm` stops a run that names it there before any model is loaded,
:func:`backend_refusal` says which settings vLLM cannot sample with (:data:`BACKEND_LIMITS`),
and :class:`VllmEngine` runs vLLM on pre-rendered token ids (no second BOS, no second chat
template), one request per answer with its own ``SamplingParams`` (its seed), returning
each answer's text, token ids and ``finish_reason`` ("stop": an end token; "length":
``max_tokens`` reached). vllm is imported lazily: the package is optional (``make setup-vllm``).
"""
from __future__ import annotations

import torch

VLLM_INSTALL = "make setup-vllm (its own environment .venv-vllm, configs/vllm-env.txt; the generation rules use it)"

# Settings a backend cannot sample with: (backend, setting) -> (lowest, highest) allowed, None for
# no bound. vLLM's SamplingParams raises "temperature must be in [0, 2]" (0.33), so dft.txt
# Fig. 1's T = 5 pool cannot run there. `auto` falls back to transformers for such a pool (the
# manifest's backend_reason says why); naming the backend is refused up front. One row per limit.
BACKEND_LIMITS = {
    ("vllm", "temperature"): (0.0, 2.0),
}


def backend_refusal(backend: str, **settings) -> str | None:
    """Why ``backend`` cannot sample with ``settings`` (temperature=..., top_p=...), or None."""
    for (name, key), (lo, hi) in BACKEND_LIMITS.items():
        value = settings.get(key)
        if name != backend or value is None:
            continue
        if hi is not None and value > hi:
            return f"{name} allows {key} <= {hi:g}, asked {value}"
        if lo is not None and value < lo:
            return f"{name} allows {key} >= {lo:g}, asked {value}"
    return None


def vllm_missing() -> str | None:
    """Why vLLM cannot run on this machine (None: a CUDA GPU is visible and the package is installed)."""
    import importlib.util

    if not torch.cuda.is_available():
        return "no CUDA GPU is visible"
    if importlib.util.find_spec("vllm") is None:
        return "the vllm package is not installed"
    return None


def check_vllm() -> None:
    """vLLM needs a CUDA GPU and its package: say so in one line before any model is loaded."""
    if not torch.cuda.is_available():
        raise ValueError(f"backend 'vllm' needs a CUDA GPU and none is visible here; use backend "
                         f"'transformers' or 'auto' on this machine (on a GPU machine: {VLLM_INSTALL})")
    try:
        import vllm  # noqa: F401
    except ImportError:
        raise ValueError(f"backend 'vllm' needs the vllm package, which is not installed: {VLLM_INSTALL}; "
                         f"or use backend 'transformers'") from None


class VllmEngine:
    """One vLLM engine (loaded once) on pre-rendered token ids, one request per prompt with its own seed.
    ``tokenizer``: the one the caller rendered the prompts with (else it is loaded from ``model_dir``)."""

    def __init__(self, model_dir, *, dtype: str = "bfloat16", seed: int = 0, tokenizer=None):
        try:
            from vllm import LLM, SamplingParams
        except ImportError:
            raise ValueError(f"backend 'vllm' needs the vllm package: {VLLM_INSTALL}; "
                             f"or use backend 'transformers'") from None
        if tokenizer is None:
            from negfree.common.models import load_tokenizer

            tokenizer = load_tokenizer(model_dir)
        self.tok = tokenizer
        self.SamplingParams = SamplingParams
        self.llm = LLM(model=str(model_dir), tokenizer=str(model_dir), dtype=dtype, seed=seed)

    def generate(self, prompts: list[list[int]], seeds: list[int | None], *, temperature: float, top_p: float,
                 top_k: int | None, max_new_tokens: int, stop_token_ids: list[int] | None = None) -> list[dict]:
        """``[{"text", "token_ids", "finish_reason"}]`` in the order of ``prompts``; the text as vLLM
        decoded it (special tokens skipped), ``finish_reason`` None when vLLM gives none."""
        extra = {} if stop_token_ids is None else {"stop_token_ids": list(stop_token_ids)}
        params = [self.SamplingParams(n=1, temperature=temperature, top_p=top_p, top_k=top_k or -1,
                                      max_tokens=max_new_tokens, seed=s, **extra) for s in seeds]
        outs = self.llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
        return [{"text": o.outputs[0].text, "token_ids": list(o.outputs[0].token_ids),
                 "finish_reason": getattr(o.outputs[0], "finish_reason", None)} for o in outs]
