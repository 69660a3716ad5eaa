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

# Renders user/assistant (and system) turns; assistant turns end with eos so a
# trained model learns to stop.
CHAT_TEMPLATE = (
    "{% for m in messages %}"
    "<|{{ m['role'] }}|>\n{{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
SPECIAL_TOKENS = ["<|pad|>", "<|bos|>", "<|eos|>", "<|system|>", "<|user|>", "<|assistant|>"]


def _train_tokenizer(texts, vocab_size=600):
    """A byte-level BPE: any string encodes (no <unk>), as lm-eval feeds it free text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>",
                                   eos_token="<|eos|>", pad_token="<|pad|>")
    fast.chat_template = CHAT_TEMPLATE
    return fast


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
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from negfree.data.embedded import load_jsonl

    texts = []
    for split in ("train", "test"):
        for rec in load_jsonl(embedded_dir / f"{split}.jsonl"):
            texts += [m["content"] for m in rec["prompt"]] + [rec["positive"]]
    texts += ["Question: Answer: The answer is"]
    tok = _train_tokenizer(texts)

    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=2,
        max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id

    out = tmp_path_factory.mktemp("tiny_model")
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
