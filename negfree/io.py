"""Atomic file writes and JSON(L) helpers.

Every artifact is written to a temporary file in the destination directory and
renamed into place, so a killed job never leaves a file that looks complete.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp makes 0600; artifacts are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_dir_atomically(out_dir: str | Path, fill) -> Path:
    """``fill(tmp)`` writes into a temporary sibling directory, which then replaces ``out_dir`` whole."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)   # mkdtemp makes 0700
        fill(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def _clean(obj):
    """JSON cannot hold NaN/inf: write them as null rather than as invalid JSON."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def write_json(path: str | Path, obj) -> Path:
    return atomic_write_text(path, json.dumps(_clean(obj), indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: str | Path, records) -> Path:
    return atomic_write_text(path, "".join(json.dumps(_clean(r), default=str) + "\n" for r in records))


def read_json(path: str | Path):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    return json.loads(path.read_text())


def iter_jsonl(path: str | Path, not_found: str):
    """(line number, "file:line", record) for every non-blank line of a JSONL file; a missing
    file raises ``FileNotFoundError(not_found)``, a bad line one ValueError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(not_found)
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
            yield lineno, where, rec
