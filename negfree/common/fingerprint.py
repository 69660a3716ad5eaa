"""The identity of a model directory, as every resumable stage records it.

Scoring (``model_fingerprint`` in its progress header), generation (``model_sha256`` in its
progress header and manifest) and lm-eval evaluation (the key folder of its request cache,
negfree.evaluate.protocols) record :func:`model_fingerprint` of the model they run, and a
restarted job resumes only when the model it is given now has the same one.
"""
from __future__ import annotations

import hashlib
from pathlib import Path


def model_fingerprint(model_dir: str | Path) -> str:
    """sha256 over every file under ``model_dir``, in sorted path order: each file's relative
    path, a NUL, its bytes, a NUL (hex digest).

    Content, not names/sizes/modification times: exact, so a checkpoint retrained in place with
    the same file sizes is told apart, and a copied or re-synced directory (new mtimes, same
    bytes) still resumes. The cost is one sequential read and hash of the weights at the start
    of each job (sha256 runs at roughly 1-2 GB/s on one core; a network filesystem may be slower):
    seconds for a 1-2B model, about half a minute for an 8B one in bf16. The job then loads
    the same weights anyway, mostly from the page cache this read warmed.
    """
    root, h = Path(model_dir), hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(root)).encode("utf-8") + b"\0")
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        h.update(b"\0")
    return h.hexdigest()
