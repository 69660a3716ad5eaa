"""A tiny random chat model built offline, for tests and ``negfree bench train --model tiny``.

A LlamaForCausalLM from a config (no download) and a byte-level BPE tokenizer
trained on the embedded dataset's text, saved like any hub checkpoint, with a
chat template and bos/eos/pad tokens, so it stands in for a real chat model in
every stage (generation, scoring, training, lm-eval).
"""
from __future__ import annotations

from pathlib import Path

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


def train_tokenizer(texts, vocab_size=600):
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



def make_tiny_model(out_dir: str | Path, data_dir: str | Path | None = None, *, hidden: int = 32,
                    layers: int = 2, heads: int = 2, seed: int = 0, dtype: str = "float32") -> Path:
    """Save a random Llama (``hidden`` x ``layers``) and its tokenizer into ``out_dir``.
    ``data_dir`` holds the embedded dataset (made in a temporary directory when None).
    ``dtype``: the weights' dtype on disk ("bfloat16": as every paper model ships on the hub)."""
    import tempfile

    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from negfree.data.embedded import make_embedded
    from negfree.data.schema import load_jsonl

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        if data_dir is None:
            make_embedded(tmp)
            data_dir = tmp
        texts = []
        for split in ("train", "test"):
            for rec in load_jsonl(Path(data_dir) / f"{split}.jsonl"):
                texts += [m["content"] for m in rec["prompt"]] + [rec["positive"]]
    texts += ["Question: Answer: The answer is"]
    tok = train_tokenizer(texts)
    config = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        max_position_embeddings=512, tie_word_embeddings=False,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.to(getattr(torch, dtype)).save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
