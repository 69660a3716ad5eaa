"""The record schema every stage reads (id, prompt as chat messages, positive; negatives and
references once generated and scored) and its one reader, which checks every record."""
from __future__ import annotations

from pathlib import Path

from negfree.common.io import iter_jsonl

REQUIRED_COLUMNS = ("id", "prompt", "positive")


def _check_record(rec, where: str) -> None:
    """Raise one ValueError naming the column when a record is unusable."""
    if not isinstance(rec, dict):
        raise ValueError(f"{where}: expected a JSON object, got {type(rec).__name__}")
    for col in REQUIRED_COLUMNS:
        if col not in rec:
            raise ValueError(f"{where}: missing required column {col!r}")
    if not isinstance(rec["id"], str) or not rec["id"]:
        raise ValueError(f"{where}: column 'id' must be a non-empty string")
    where = f"{where} (id={rec['id']!r})"
    dropped_positive = rec.get("paired") is False and rec.get("dropped") == "positive"
    if dropped_positive:   # pairing-ratio masking (negfree.data.adapters.apply_pairing_ratio)
        if rec["positive"] is not None:
            raise ValueError(f"{where}: 'dropped: positive' but column 'positive' is not null")
    elif not isinstance(rec["positive"], str) or not rec["positive"].strip():
        raise ValueError(f"{where}: column 'positive' is empty or not a string")
    prompt = rec["prompt"]
    if not isinstance(prompt, list) or not prompt:
        raise ValueError(f"{where}: column 'prompt' must be a non-empty list of messages")
    for i, msg in enumerate(prompt):
        if (not isinstance(msg, dict) or not isinstance(msg.get("role"), str)
                or not isinstance(msg.get("content"), str) or not msg["content"].strip()):
            raise ValueError(f"{where}: column 'prompt' message {i} needs a 'role' "
                             f"and a non-empty 'content'")


def load_jsonl(path: str | Path, transform=None) -> list[dict]:
    """Read a JSONL dataset and validate every record.

    Fails on the first problem with one message naming the file, the line (and
    the id once known) and the column, because a silently dropped or half-read
    record would change every number downstream.
    """
    records, ids = [], {}
    for lineno, where, rec in iter_jsonl(path, f"dataset file not found: {path}"):
        _check_record(rec, where)
        if transform is not None:   # e.g. the trainer's compact references, applied line by line
            rec = transform(rec)
        if rec["id"] in ids:
            raise ValueError(f"{where}: duplicate id {rec['id']!r} (first on line {ids[rec['id']]})")
        ids[rec["id"]] = lineno
        records.append(rec)
    if not records:
        raise ValueError(f"{path}: no records")
    return records

