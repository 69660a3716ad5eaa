"""A content-addressed cache of LLM-judge verdicts: a judgement is asked once, ever.

Key: :func:`cache_key`, the sha256 of a canonical JSON of everything that changes what the
judge answers: the judge model id, the settings that change the answer (temperature,
max_tokens), the template text, the instruction, the output(s) judged, their order ("ab" or
"ba"), and the rendered messages themselves (so two prompts that differ in anything else they
are rendered from, a reference answer say, never share a key). The judge's display name, its
URL, its concurrency and retry settings are not in the key: they do not change the verdict.
Pin the model id to a dated snapshot ("gpt-4-0613", not "gpt-4") so a cached verdict means
what it says.

Storage: ``<cache dir>/judgements.jsonl``, append-only, one JSON line per completed judgement
(the parsed verdict, the raw reply, the token usage the server reported, the attempts and
their history). Each line is flushed and fsynced before the judgement counts as done, so a
killed job loses at most the line being written; that truncated last line is ignored (and
trimmed) on the next load. A later line for the same key wins. Failed judgements are never
written: they are asked again on the next run.

Concurrency: one writing process per cache directory. Within it, any number of threads and
of :class:`JudgementCache` objects may write the same directory: they share one append handle
and a lock serialises the lines. The first write takes an exclusive advisory lock (``flock``)
on the file, held until the last cache object of the process that wrote closes (``close()``,
or the end of a ``with`` block; one never closed holds it until the process exits), so a
second process that tries to write the same cache fails with one line instead of
interleaving. Readers need no lock; a cache object sees what was on disk when it was made,
plus what it wrote itself.
The cache never holds an API key: nothing of the request headers reaches it.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from negfree.common.errors import InputError
from negfree.common.io import check_writable

try:
    import fcntl
except ImportError:   # not POSIX: one writer per cache is then up to the caller
    fcntl = None

CACHE_FILE = "judgements.jsonl"
KEY_FORMAT = "negfree-judge-cache/1"


class JudgeCacheError(InputError):
    """The cache cannot be used (another process writes it, or a line in its middle is corrupt):
    reported in one line."""


def canonical_json(obj: Any) -> str:
    """The one JSON text of ``obj``: sorted keys, no spaces, unicode kept, tuples as lists."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def cache_key(model: str, temperature: float, max_tokens: int | None, template: str,
              instruction: Any, outputs: Any, order: str, messages: Any) -> str:
    """sha256 (hex) of the canonical JSON of what decides a judge's answer (module docstring).

    ``temperature`` is taken as a float, so 0 and 0.0 are one key; ``outputs`` as a list."""
    if isinstance(outputs, str):
        outputs = [outputs]
    content = {
        "format": KEY_FORMAT,
        "model": str(model),
        "temperature": float(temperature),
        "max_tokens": None if max_tokens is None else int(max_tokens),
        "template": template,
        "instruction": instruction,
        "outputs": list(outputs),
        "order": order,
        "messages": messages,
    }
    return hashlib.sha256(canonical_json(content).encode("utf-8")).hexdigest()


@dataclass
class CacheEntry:
    """One completed judgement, as one line of the cache file."""
    key: str
    verdict: Any                          # what the parser returned; must be JSON-serialisable
    raw: str                              # the reply text the verdict was parsed from
    usage: dict | None = None             # token usage of the final reply, if the server sent it
    attempts: int = 1                     # requests sent for it (retries and malformed replies included)
    history: list = field(default_factory=list)   # the failed attempts: {"attempt", "error"[, "raw"]}
    judge: str = ""                       # the judge's display name (not part of the key)
    model: str = ""
    kind: str = ""                        # the template id
    order: str = ""
    request_id: str | None = None
    created: str = ""                     # UTC time the judgement completed

    def to_line(self) -> bytes:
        return (canonical_json(asdict(self)) + "\n").encode("utf-8")

    @classmethod
    def from_record(cls, rec: dict) -> "CacheEntry":
        known = {k: rec[k] for k in cls.__dataclass_fields__ if k in rec}
        return cls(**known)


class JudgementCache:
    """The judgements of one cache directory, loaded whole on construction.

    ``get(key)`` before asking, ``put(entry)`` once a judgement is parsed. Thread-safe within
    one process; one writing process per directory (module docstring)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / CACHE_FILE
        self._lock = threading.Lock()
        self._entries: dict[str, CacheEntry] = {}
        self._writer: _Writer | None = None
        self.dropped_tail = False          # whether a truncated last line was found on load
        self._load()

    # ------------------------------------------------------------------ reading
    def _load(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        end = data.rfind(b"\n") + 1
        self.dropped_tail = end != len(data)
        for lineno, raw in enumerate(data[:end].splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                rec = json.loads(raw.decode("utf-8"))
                entry = CacheEntry.from_record(rec)
            except (UnicodeDecodeError, json.JSONDecodeError, TypeError) as err:
                raise JudgeCacheError(
                    f"{self.path}:{lineno}: not a judge cache line ({type(err).__name__}); only a "
                    f"killed write can cut the last line, so this file was edited: remove the "
                    f"line (its judgement is asked again) or the file") from None
            self._entries[entry.key] = entry

    def get(self, key: str) -> CacheEntry | None:
        with self._lock:
            return self._entries.get(key)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._entries

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    # ------------------------------------------------------------------ writing
    def open_for_writing(self) -> None:
        """Take this process's writer lock on the cache file (idempotent). Called by the judge
        client before it sends its first request, so a second writing process fails before it
        spends anything."""
        with self._lock:
            if self._writer is None:
                self._writer = _Writer.acquire(self.path)

    def put(self, entry: CacheEntry) -> None:
        """Append one judgement: written, flushed and fsynced before this returns."""
        line = entry.to_line()   # fails (TypeError/ValueError) before writing if not JSON
        with self._lock:
            if self._writer is None:
                self._writer = _Writer.acquire(self.path)
            writer = self._writer
        writer.append(line)
        with self._lock:
            self._entries[entry.key] = entry

    def close(self) -> None:
        """Give up writing (the file and its lock go when no cache object of this process
        writes it any more); the entries stay readable."""
        with self._lock:
            if self._writer is not None:
                _Writer.release(self._writer)
                self._writer = None

    def __enter__(self) -> "JudgementCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"JudgementCache({str(self.directory)!r}, {len(self)} judgements)"


class _Writer:
    """The append handle of one cache file, shared by every cache object of this process that
    writes it (so their lines never interleave), holding the cross-process ``flock``."""
    _open: dict[str, "_Writer"] = {}
    _registry_lock = threading.Lock()

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()
        self.users = 0
        directory = path.parent
        check_writable(directory, "judge cache")
        directory.mkdir(parents=True, exist_ok=True)
        fh = open(path, "ab")
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                raise JudgeCacheError(f"judge cache {path} is being written by another process; wait "
                                      f"for it to finish, or give this run its own cache directory") from None
            except OSError as err:   # a filesystem without flock (ENOLCK, ENOSYS): one writer per job anyway
                print(f"negfree: judge cache {path}: no file lock on this filesystem ({err.strerror}); "
                      f"each judging job has its own cache directory", file=sys.stderr)
        # a line cut by a kill: trim it now that we hold the lock, so the next line starts clean
        if os.fstat(fh.fileno()).st_size:
            with open(path, "rb") as rf:
                data = rf.read()
            end = data.rfind(b"\n") + 1
            if end != len(data):
                fh.truncate(end)
                fh.flush()
                os.fsync(fh.fileno())
        self.fh = fh

    @classmethod
    def acquire(cls, path: Path) -> "_Writer":
        name = os.path.realpath(path)
        with cls._registry_lock:
            writer = cls._open.get(name)
            if writer is None:
                writer = cls._open[name] = cls(Path(path))
            writer.users += 1
            return writer

    @classmethod
    def release(cls, writer: "_Writer") -> None:
        with cls._registry_lock:
            writer.users -= 1
            if writer.users == 0:
                cls._open.pop(os.path.realpath(writer.path), None)
                with writer.lock:
                    writer.fh.close()

    def append(self, line: bytes) -> None:
        with self.lock:
            self.fh.write(line)
            self.fh.flush()
            os.fsync(self.fh.fileno())
