"""Shared fixtures. Everything here runs offline: no hub, no network.

``tiny_model_dir`` is a random 2-layer Llama with a byte-level BPE tokenizer
trained on the embedded dataset, saved like any hub checkpoint. It is small
enough that training and evaluation tests take seconds on 2 CPU cores, and
generic enough (chat template, bos/eos/pad) to stand in for a real chat model.
"""
import os
import sys
from pathlib import Path

import pytest

# Never touch the hub from tests, whatever the caller's environment says.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
try:
    import negfree  # noqa: F401
except ImportError:  # not installed yet: run from the checkout
    sys.path.insert(0, str(ROOT))


@pytest.fixture(scope="session")
def embedded_dir(tmp_path_factory):
    """The default embedded dataset (train 256 / test 64, seed 0)."""
    from negfree.data.embedded import make_embedded

    out = tmp_path_factory.mktemp("embedded")
    make_embedded(out)
    return out


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, embedded_dir):
    """Directory with a saved tiny random LlamaForCausalLM and its tokenizer."""
    from negfree.bench.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny_model"), embedded_dir)


@pytest.fixture
def tiny_dag_config(tiny_model_dir):
    """configs/demo.yaml shrunk to the tiny model: every stage for real, seconds per job.
    One method (dft2, tau 0.5); tests set their own methods, sweeps and toy."""
    import yaml

    cfg = yaml.safe_load((ROOT / "configs" / "demo.yaml").read_text())
    cfg["model"] = {"name": "tiny", "source": str(tiny_model_dir)}
    cfg["data"].update(n_train=64, n_test=16, train_prompts=8)
    cfg["generate"].update(max_new_tokens=6)
    cfg["train"].update(max_steps=2, batch_size=2, micro_batch_size=2, max_len=96)
    cfg["score"]["max_len"] = 96
    cfg["train"].update(probe_records=2, probe_every=1)   # 2 of the 8 prompts held out as the probe set
    cfg["methods"] = {"dft2": {"tau": 0.5}}
    cfg.pop("replicates")                                 # tests that want seeds set their own
    cfg["evaluate"] = {"limit": 4, "chat_template": True}
    cfg["toy"] = {"frozen_lake": {"seeds": 1, "steps": 20, "methods": ["sft"]}}
    return cfg


@pytest.fixture(scope="module")
def one_thread():
    """The tiny model is far faster on one thread when the 2 shared cores are busy
    (modules opt in with ``pytestmark = pytest.mark.usefixtures("one_thread")``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def scored_pool(tiny_model_dir, embedded_dir):
    """make(out, n, negatives): the first n embedded records, each with the answers of the next
    `negatives` records as its pool of negatives (no generation needed), scored under the tiny
    model at max_len 96; returns the scored file."""
    def make(out, n=8, negatives=3):
        from negfree.common.io import write_jsonl
        from negfree.data.schema import load_jsonl
        from negfree.score.reference import score_records

        recs = load_jsonl(embedded_dir / "train.jsonl")[:n]
        for i, r in enumerate(recs):
            r["negatives"] = [recs[(i + k) % len(recs)]["positive"] for k in range(1, negatives + 1)]
        write_jsonl(out / "neg.jsonl", recs)
        score_records(tiny_model_dir, recs, out / "scored.jsonl", max_len=96)
        return out / "scored.jsonl"
    return make
