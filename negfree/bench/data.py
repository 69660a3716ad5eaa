"""`negfree bench data`: padding of training and scoring batches, before and after length sorting.

Each ``padding_ratio_*`` is computed token positions / real tokens (1.0 = no padding), from
token counts alone (no model runs), for the batch settings of ``--configfile`` (default
configs/paper/dft.yaml: micro-batches of 2 prompts x (1 + B = 3) rows, max_len 1024, scoring
batches of 16 sequences) on two length distributions:

- ``embedded``: the embedded training split (negfree/data/embedded.py) tokenized with the
  embedded model's tokenizer (SmolLM2, read from the shipped GGUF); each prompt's B negatives
  are the next records' answers (as ``negfree bench train`` does), since the real pool only
  exists after generation;
- ``ultrafeedback_synthetic``: ``--records`` (4096) records whose token lengths are drawn,
  with a fixed seed, from log-normal distributions shaped like UltraFeedback (binarized) under
  a Llama/Mistral tokenizer: prompts median 110 tokens (sigma 0.9: many one-line questions, a
  tail of pasted documents), chosen answers median 260 (sigma 0.7), generated negatives median
  230 (sigma 0.6) and capped at ``generate.max_new_tokens`` (320 for dft); each row is
  min(max_len, prompt + answer + 1 eos). The medians and spreads are our approximation of the
  dataset's published length statistics, not measured here (no hub access); the point is a
  realistic spread, which is what padding depends on.

Definitions (the same code paths the stages use where they exist):
- ``score_before``: the old scorer, sequences in record order, ``score.batch_size`` per
  batch; ``score_after``: negfree.common.batching.plan_batches (sorted, token budget), what
  ``negfree score`` runs.
- ``train_before``: padded micro-batches (negfree/train/loop.py without packing or
  bucketing): a seeded random order of prompts, ``micro_batch_size`` prompts per micro-batch,
  every row (positive, B negatives) padded to the micro-batch's longest row.
  ``train_bucketed``: length bucketing (``train.length_bucketing``): prompts sorted by their
  longest row, then cut into micro-batches; rows of one prompt still share a micro-batch, so
  the padding left is mostly within a prompt (a 40-token positive beside a 320-token
  negative). ``train_after``: what the trainer computes under the config's settings:
  packing (``train.packing``, negfree.common.logprobs.pack_inputs) feeds the model exactly the real
  tokens (1.0); without it, bucketing or padding.
- Packing's attention is another matter: with sdpa or eager attention the packed row's
  block-diagonal mask is computed densely. ``attention_ratio_packed_dense`` and
  ``attention_ratio_packed_varlen`` are the query-key pairs computed per micro-batch,
  (sum of row lengths)^2 dense or sum of length^2 with a varlen kernel (flash-attention; flex
  attention skips masked blocks, so close to it), over the padded path's rows x longest^2.
  ``*_packed_capacity``: packed rows of ``train.pack_capacity`` tokens (``max_len`` when the
  config leaves it null), first-fit decreasing (negfree.common.logprobs.pack_bins): positions per
  real token and attention pairs. Packed rows no wider than the micro-batch's longest row never
  cost more attention than padding; wider ones pack more but can (short rows, a wide capacity).

Top-level keys are the worse of the two distributions; per-distribution values are under
``datasets``.

    negfree bench data --json results/bench/data.json
"""
from __future__ import annotations

import argparse
from pathlib import Path

from negfree.bench.output import emit
from negfree.common.batching import UF_SHAPE, ratios, synthetic_rows

KEYS = ("padding_ratio_train_before", "padding_ratio_train_after", "padding_ratio_score_before",
        "padding_ratio_score_after", "padding_ratio_train_bucketed", "attention_ratio_packed_dense",
        "attention_ratio_packed_varlen", "padding_ratio_train_packed_capacity", "attention_ratio_packed_capacity")
NOTES = ("padding_ratio_train_after is what the trainer computes under the config's settings (train.packing: "
         "the real tokens only, 1.0; else length bucketing or padding). padding_ratio_score_after is what negfree "
         "score runs (negfree.common.batching.plan_batches). attention_ratio_*: query-key pairs of packed micro-batches over "
         "the padded ones (dense: sdpa/eager masks; varlen: flash-attention). Top-level values: the worse of the "
         "datasets.")


def settings(configfile: str | Path) -> dict:
    import yaml

    cfg = yaml.safe_load(Path(configfile).read_text()) or {}
    if "experiments" in cfg:
        raise ValueError(f"{configfile}: a list of experiments; give one experiment file (e.g. configs/paper/dft.yaml)")
    t, s, g = cfg.get("train", {}), cfg.get("score", {}), cfg.get("generate", {})
    max_len = int(t.get("max_len") or s.get("max_len") or 512)
    bs = int(s.get("batch_size") or 16)
    return {"configfile": str(configfile), "micro_batch_size": int(t.get("micro_batch_size") or 1),
            "num_negatives": int(t.get("num_negatives") or 2), "max_len": max_len, "score_batch_size": bs,
            "score_max_batch_tokens": int(s.get("max_batch_tokens") or bs * max_len),
            "max_new_tokens": int(g.get("max_new_tokens") or 320), "seed": int(t.get("seed") or 0),
            "packing": bool(t.get("packing", False)), "pack_capacity": t.get("pack_capacity"),
            "length_bucketing": bool(t.get("length_bucketing", False))}


def embedded_rows(B: int, max_len: int) -> list[list[int]]:
    from transformers import AutoTokenizer

    from negfree.common.models import embedded_gguf_path
    from negfree.data.embedded import build_splits
    from negfree.data.tokenize import encode, render_prompt

    g = embedded_gguf_path()
    tok = AutoTokenizer.from_pretrained(g.parent, gguf_file=g.name)
    recs = build_splits(256, 64, 0)["train"]
    rows = []
    for i, r in enumerate(recs):
        p = render_prompt(tok, r["prompt"])
        answers = [r["positive"]] + [recs[(i + k) % len(recs)]["positive"] for k in range(1, B + 1)]
        rows.append([len(encode(tok, p, a, max_len=max_len).ids) for a in answers])
    return rows


def run(configfile: str, n_synthetic: int, with_embedded: bool = True) -> dict:
    st = settings(configfile)
    data = {"ultrafeedback_synthetic": ratios(synthetic_rows(n_synthetic, st["num_negatives"], st["max_len"],
                                                             st["max_new_tokens"], st["seed"]), st)}
    if with_embedded:
        data["embedded"] = ratios(embedded_rows(st["num_negatives"], st["max_len"]), st)
    out = {k: max(d[k] for d in data.values()) for k in KEYS}
    return {**out, "settings": st, "datasets": data, "synthetic_shape": {k: {"median": m, "sigma": s}
                                                                         for k, (m, s) in UF_SHAPE.items()},
            "notes": NOTES}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="negfree bench data", description=__doc__.splitlines()[0])
    p.add_argument("--configfile", default="configs/paper/dft.yaml",
                   help="one experiment file: its train/score/generate batch settings")
    p.add_argument("--records", type=int, default=4096, help="synthetic UltraFeedback-shaped records")
    p.add_argument("--no-embedded", action="store_true", help="skip the embedded data (no tokenizer load)")
    p.add_argument("--json", help="write the result here (printed either way)")
    args = p.parse_args(argv)
    if args.records < 1:
        raise ValueError("--records must be >= 1")
    return emit(run(args.configfile, args.records, not args.no_embedded), args.json)


if __name__ == "__main__":
    main()
