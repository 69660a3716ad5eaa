"""The embedded dataset: a small, project-made, fully offline dataset with
verifiable answers.

Why it exists: the development machines cannot reach a dataset hub, yet every
stage (generate, score, train, evaluate) must run end to end there. This module
makes the data from a seed alone, so the demo and the tests need nothing but
this file, and the same seed always gives byte-identical files.

Two kinds of records:
- ``arith`` (about 70%): one- or two-step word problems on small integers. The
  positive shows the working and ends with "The answer is N." The expression is
  stored in ``meta.expression`` so anyone can recompute the answer.
- ``fact`` (about 30%): short questions on a hand-written table of 40 facts
  (capitals, chemical symbols, planets, currencies, languages). The positive
  starts with the answer ("Paris is the capital of France."), so a generation
  can be scored by its first words.

Train and test never share a prompt. Facts are split *by fact*, not by
phrasing: a test fact is never seen in training under another wording. There
are only 40 facts x 3 phrasings, so when a split asks for more fact records
than its facts can phrase, the split gets fewer facts and more arithmetic; the
manifest records the real counts per kind.

Run ``python -m negfree.data.embedded OUT_DIR`` to write the default split.
"""
from __future__ import annotations

import hashlib
import json
import math
import random
import sys
from pathlib import Path

from negfree.common.io import atomic_write_bytes

FACT_FRACTION = 0.3
N_CHOICES = 4
# category -> (question templates, positive template). ``{s}`` is the subject,
# ``{a}`` the answer. Positives start with the answer on purpose (see above).
FACT_TEMPLATES = {
    "capital": (
        ("What is the capital of {s}?", "Which city is the capital of {s}?",
         "Name the capital city of {s}."),
        "{a} is the capital of {s}.",
    ),
    "element": (
        ("Which chemical element has the symbol {s}?",
         "What element does the chemical symbol {s} stand for?",
         "Name the element whose chemical symbol is {s}."),
        "{a} is the element with the symbol {s}.",
    ),
    "planet": (
        ("Which planet {s}?", "Name the planet that {s}.",
         "Which planet of the solar system {s}?"),
        "{a} {s}.",
    ),
    "currency": (
        ("What is the currency of {s}?", "Which currency is used in {s}?",
         "Name the currency of {s}."),
        "{a} is the currency of {s}.",
    ),
    "language": (
        ("What is the main language spoken in {s}?",
         "Which language do most people in {s} speak?",
         "Name the main language of {s}."),
        "{a} is the main language of {s}.",
    ),
}

# (category, subject, answer). Every category has at least N_CHOICES answers so
# that distractors can always come from the same category.
FACTS = (
    ("capital", "France", "Paris"), ("capital", "Japan", "Tokyo"),
    ("capital", "Italy", "Rome"), ("capital", "Germany", "Berlin"),
    ("capital", "Spain", "Madrid"), ("capital", "Egypt", "Cairo"),
    ("capital", "Canada", "Ottawa"), ("capital", "Kenya", "Nairobi"),
    ("capital", "Peru", "Lima"), ("capital", "Norway", "Oslo"),
    ("capital", "India", "New Delhi"), ("capital", "Argentina", "Buenos Aires"),
    ("element", "Fe", "Iron"), ("element", "Au", "Gold"),
    ("element", "Ag", "Silver"), ("element", "Na", "Sodium"),
    ("element", "O", "Oxygen"), ("element", "H", "Hydrogen"),
    ("element", "Cu", "Copper"), ("element", "Pb", "Lead"),
    ("planet", "is known as the Red Planet", "Mars"),
    ("planet", "is the largest", "Jupiter"),
    ("planet", "is closest to the Sun", "Mercury"),
    ("planet", "has the most famous rings", "Saturn"),
    ("planet", "is the hottest", "Venus"),
    ("planet", "is home to humans", "Earth"),
    ("currency", "Japan", "Yen"), ("currency", "the United Kingdom", "Pound"),
    ("currency", "India", "Rupee"), ("currency", "Mexico", "Peso"),
    ("currency", "Russia", "Ruble"), ("currency", "China", "Yuan"),
    ("language", "Brazil", "Portuguese"), ("language", "Mexico", "Spanish"),
    ("language", "Egypt", "Arabic"), ("language", "the Netherlands", "Dutch"),
    ("language", "Greece", "Greek"), ("language", "Sweden", "Swedish"),
    ("language", "Poland", "Polish"), ("language", "Turkey", "Turkish"),
)

NAMES = (("Tom", "he"), ("Anna", "she"), ("Ravi", "he"), ("Mia", "she"),
         ("Leo", "he"), ("Sara", "she"), ("Omar", "he"), ("Lena", "she"),
         ("Ben", "he"), ("Zoe", "she"))
ITEMS = ("apples", "pencils", "marbles", "stickers", "books", "cookies",
         "cards", "shells")


# ---------------------------------------------------------------- arithmetic
def _arith_problem(rng: random.Random) -> tuple[str, str, str, int]:
    """One word problem: (question, positive, expression, answer).

    Operands are chosen so that every result is >= 2 (plural nouns stay right)
    and every expression is plain left-to-right integer arithmetic.
    """
    name, pron = rng.choice(NAMES)
    item = rng.choice(ITEMS)
    shape = rng.choice(("add", "sub", "mul", "add_sub", "mul_add"))
    if shape == "add":
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        expr = f"{a} + {b}"
        q = f"{name} has {a} {item} and buys {b} more. How many {item} does {pron} have?"
        tail = f"{item}"
    elif shape == "sub":
        a = rng.randint(5, 30)
        b = rng.randint(2, a - 2)
        expr = f"{a} - {b}"
        q = (f"{name} has {a} {item} and gives {b} to a friend. "
             f"How many {item} does {pron} have left?")
        tail = f"{item} left"
    elif shape == "mul":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        expr = f"{a} * {b}"
        q = (f"{name} buys {a} bags with {b} {item} in each bag. "
             f"How many {item} does {pron} buy?")
        tail = f"{item}"
    elif shape == "add_sub":
        a, b = rng.randint(2, 20), rng.randint(2, 20)
        c = rng.randint(2, a + b - 2)
        expr = f"{a} + {b} - {c}"
        q = (f"{name} has {a} {item}, buys {b} more and then gives {c} away. "
             f"How many {item} does {pron} have now?")
        tail = f"{item} now"
    else:  # mul_add
        a, b, c = rng.randint(2, 6), rng.randint(2, 9), rng.randint(2, 12)
        expr = f"{a} * {b} + {c}"
        q = (f"{name} has {a} boxes of {b} {item} and {c} loose {item}. "
             f"How many {item} does {pron} have in total?")
        tail = f"{item} in total"
    answer = evaluate_expression(expr)
    verb = "buys" if shape == "mul" else "has"
    positive = f"{name} {verb} {expr} = {answer} {tail}. The answer is {answer}."
    return q, positive, expr, answer


def evaluate_expression(expr: str) -> int:
    """Evaluate ``"a op b [op c]"`` with * before + and -, without ``eval``.

    Used both to make the answers and (by tests and consumers) to check them.
    """
    tokens = expr.split()
    if len(tokens) % 2 == 0 or any(t not in "+-*" for t in tokens[1::2]):
        raise ValueError(f"not a simple integer expression: {expr!r}")
    terms, signs = [int(tokens[0])], [1]
    for op, num in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            terms[-1] *= int(num)
        else:
            terms.append(int(num))
            signs.append(1 if op == "+" else -1)
    return sum(s * t for s, t in zip(signs, terms))


def _arith_distractors(rng: random.Random, answer: int) -> list[str]:
    """Nearby wrong integers: the plausible slips of an off-by-a-little model."""
    near = [answer + d for d in (-3, -2, -1, 1, 2, 3) if answer + d >= 0]
    return [str(x) for x in rng.sample(near, N_CHOICES - 1)]


# ---------------------------------------------------------------- facts
def _fact_prompts(fact: tuple[str, str, str]) -> list[tuple[str, str]]:
    """All (question, positive) phrasings of one fact."""
    category, subject, answer = fact
    questions, positive = FACT_TEMPLATES[category]
    pos = positive.format(s=subject, a=answer)
    return [(q.format(s=subject), pos) for q in questions]


def _fact_distractors(rng: random.Random, fact: tuple[str, str, str]) -> list[str]:
    """Other answers of the same category, so no choice is trivially off-topic."""
    category, _, answer = fact
    others = sorted({a for c, _, a in FACTS if c == category and a != answer})
    return rng.sample(others, N_CHOICES - 1)


# ---------------------------------------------------------------- assembly
def _record(rng: random.Random, kind: str, question: str, positive: str,
            answer: str, distractors: list[str], meta: dict) -> dict:
    label = rng.randrange(N_CHOICES)
    choices = distractors[:label] + [answer] + distractors[label:]
    return {"id": None, "kind": kind,
            "prompt": [{"role": "user", "content": question}],
            "positive": positive, "answer": answer, "choices": choices,
            "label": label, "negatives": [], "meta": meta}


def _arith_records(rng: random.Random, n: int, seen: set[str]) -> list[dict]:
    """``n`` arithmetic records whose questions are not in ``seen`` (updated)."""
    out = []
    for _ in range(1000 * max(n, 1)):
        if len(out) == n:
            return out
        q, pos, expr, ans = _arith_problem(rng)
        if q in seen:
            continue
        seen.add(q)
        out.append(_record(rng, "arith", q, pos, str(ans),
                           _arith_distractors(rng, ans), {"expression": expr}))
    raise RuntimeError(f"could not make {n} distinct arithmetic problems")


def _fact_records(rng: random.Random, facts: list, n: int) -> list[dict]:
    """Up to ``n`` records drawn without repetition from the phrasings of ``facts``."""
    pool = [(fact, q, pos) for fact in facts for q, pos in _fact_prompts(fact)]
    out = []
    for fact, q, pos in rng.sample(pool, min(n, len(pool))):
        category, subject, answer = fact
        out.append(_record(rng, "fact", q, pos, answer, _fact_distractors(rng, fact),
                           {"category": category, "subject": subject}))
    return out


def build_splits(n_train: int, n_test: int, seed: int) -> dict[str, list[dict]]:
    """The records of both splits, in memory (``make_embedded`` writes them)."""
    for name, value in (("n_train", n_train), ("n_test", n_test), ("seed", seed)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"make_embedded: {name} must be an int, got {value!r}")
    if n_train < 1 or n_test < 1:
        raise ValueError(f"make_embedded: n_train and n_test must be >= 1, "
                         f"got n_train={n_train}, n_test={n_test}")
    rng = random.Random(seed)
    facts = list(FACTS)
    rng.shuffle(facts)
    want = {"train": round(FACT_FRACTION * n_train), "test": round(FACT_FRACTION * n_test)}
    n_phrasings = len(next(iter(FACT_TEMPLATES.values()))[0])
    n_test_facts = max(math.ceil(want["test"] / n_phrasings),
                       round(len(facts) * n_test / (n_train + n_test)))
    n_test_facts = min(n_test_facts, len(facts) - 1)
    split_facts = {"test": facts[:n_test_facts], "train": facts[n_test_facts:]}

    seen: set[str] = set()
    splits, counters = {}, {"arith": 0, "fact": 0}
    for split, n in (("train", n_train), ("test", n_test)):
        records = _fact_records(rng, split_facts[split], want[split])
        records += _arith_records(rng, n - len(records), seen)
        rng.shuffle(records)
        for rec in records:
            rec["id"] = f"{rec['kind']}-{counters[rec['kind']]:05d}"
            counters[rec["kind"]] += 1
        splits[split] = records
    return splits


def _jsonl_bytes(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def make_embedded(out_dir: str | Path, n_train: int = 256, n_test: int = 64,
                  seed: int = 0) -> dict:
    """Write ``train.jsonl``, ``test.jsonl`` and ``manifest.json`` into ``out_dir``.

    Returns the manifest: seed, requested sizes, counts per split and kind, and
    the sha256 of each data file (so a later stage can tell stale data).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    splits = build_splits(n_train, n_test, seed)
    manifest = {"dataset": "negfree-embedded", "version": 1, "seed": seed,
                "n_train": n_train, "n_test": n_test, "counts": {}, "files": {}}
    for split, records in splits.items():
        data = _jsonl_bytes(records)
        atomic_write_bytes(out / f"{split}.jsonl", data)
        kinds = [r["kind"] for r in records]
        manifest["counts"][split] = {k: kinds.count(k) for k in ("arith", "fact")}
        manifest["files"][f"{split}.jsonl"] = {
            "records": len(records), "sha256": hashlib.sha256(data).hexdigest()}
    atomic_write_bytes(out / "manifest.json",
                  (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


# ---------------------------------------------------------------- reading
if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m negfree.data.embedded OUT_DIR")
    print(json.dumps(make_embedded(sys.argv[1]), indent=2))
