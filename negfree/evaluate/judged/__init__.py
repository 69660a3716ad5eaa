"""The judged benchmarks end to end from files: Arena-Hard v0.1, MT-Bench and WildBench v2
(AlpacaEval lives in ``negfree.evaluate.alpaca``).

- ``sources``: readers of each benchmark's official file formats (questions, baseline and
  reference answers, judge templates), validated, with the files' sha256.
- ``answers``: the model's answers with its chat template (greedy or seeded sampling,
  batched, resumable; MT-Bench's second turn conditioned on the model's own first answer).
- ``run``: the judge requests from the official templates, judged through
  ``negfree.evaluate.judge`` (cache, retries, the offline judge), parsed, aggregated, and one
  result JSON per (run, benchmark).
"""
