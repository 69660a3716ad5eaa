"""Atomic file writes and JSON(L) helpers.

Every artifact is written to a temporary file in the destination directory and
renamed into place, so a killed job never leaves a file that looks complete.
"""
from __future__ import annotations

import errno
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
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


def write_dir_atomically(out_dir: str | Path, fill, need_bytes: int | None = None) -> Path:
    """``fill(tmp)`` writes into a temporary sibling directory, which then replaces ``out_dir`` whole.

    A full disk (:func:`is_disk_full`) ends in one :class:`DiskFull` line naming ``out_dir`` and the
    space needed (``need_bytes``, else the size of the ``out_dir`` being replaced, else more than
    what was written before the failure) and free; the partial directory is removed either way."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o777 & ~_UMASK)   # mkdtemp makes 0700
        fill(tmp)
    except BaseException as err:
        full = isinstance(err, Exception) and is_disk_full(err, tmp)
        written = dir_bytes(tmp) if full else 0
        shutil.rmtree(tmp, ignore_errors=True)
        if not full:
            raise
        if need_bytes is None and out_dir.is_dir():
            need_bytes = dir_bytes(out_dir)
        need = f"~{human_bytes(need_bytes)}" if need_bytes else f"more than {human_bytes(written)}"
        raise DiskFull(f"no space left on device writing {out_dir}: it needs {need}, "
                       f"{human_bytes(free_bytes(out_dir))} free; free some space and rerun") from err
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)
    return out_dir


# ---------------------------------------------------------------- a full disk
DISK_FULL_MARGIN = 1 << 30   # a write that failed with less than this free is taken for a full disk
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_WORDS = ("no space left on device", "disk quota exceeded", "storagefull", "quotaexceeded")
# what torch's zip writer ("[enforce fail at inline_container.cc] unexpected pos 704 vs 598",
# "PytorchStreamWriter failed writing file data/0: file write failed") and safetensors
# ("Error while serializing: IoError(...)") say when a write fails: no errno to go by
_WRITE_FAILED_WORDS = ("unexpected pos", "write failed", "failed writing", "error while serializing", "ioerror")
_NOT_SPACE_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EISDIR,
                     errno.EEXIST, errno.ENOTEMPTY}


class DiskFull(OSError):
    """No space (or quota) left while writing: the message names the path and the space
    needed and free. An OSError (errno ENOSPC), so the CLI reports it as one line."""

    def __init__(self, message: str):
        super().__init__(errno.ENOSPC, message)

    def __str__(self) -> str:
        return self.strerror


def _chain(err: BaseException) -> list[BaseException]:
    """``err``, its causes and contexts, and the per-process failures a
    torch.distributed.checkpoint CheckpointException (FSDP's sharded save) wraps."""
    seen, todo = [], [err]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen):
            continue
        seen.append(e)
        todo += [e.__cause__, e.__context__]
        failures = getattr(e, "failures", None)
        if isinstance(failures, dict):
            todo += [f[0] if isinstance(f, tuple) else f for f in failures.values()]
    return seen


def free_bytes(path: str | Path) -> int:
    """Free bytes on the filesystem that holds ``path`` (its nearest existing ancestor)."""
    p = Path(path).absolute()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def dir_bytes(path: str | Path) -> int:
    """The bytes of every file under ``path`` (0 when it is gone)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def human_bytes(n: int | float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def is_disk_full(err: BaseException, path: str | Path) -> bool:
    """Whether ``err``, raised while writing under ``path``, means the disk (or the quota) is full:
    ENOSPC/EDQUOT or their text anywhere in the chain; or, since torch and safetensors report a
    failed write without an errno, a write failure with under DISK_FULL_MARGIN left free."""
    chain = _chain(err)
    for e in chain:
        if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
            return True
        if any(w in str(e).lower() for w in _FULL_WORDS):
            return True
    failed_write = any((isinstance(e, OSError) and e.errno not in _NOT_SPACE_ERRNOS)
                       or any(w in str(e).lower() for w in _WRITE_FAILED_WORDS) for e in chain)
    return failed_write and free_bytes(path) < DISK_FULL_MARGIN


@contextmanager
def removed_on_error(path: str | Path):
    """If the block fails, remove ``path`` (when it did not exist before) and the parent
    directories the block created for it, as long as they are empty: nothing else is touched,
    so a sibling job writing into the same new directory keeps its files."""
    path = Path(path).absolute()
    created = []
    p = path
    while not p.exists():
        created.append(p)
        p = p.parent
    try:
        yield
    except BaseException:
        if created:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
            for d in created[1:]:
                try:
                    d.rmdir()
                except OSError:   # not empty (or gone): leave it
                    break
        raise


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
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None


def iter_jsonl(path: str | Path, not_found: str):
    """(line number, "file:line", record) for every non-blank line of a JSONL file; a missing
    file raises ``FileNotFoundError(not_found)``, a bad line one ValueError naming file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(not_found)
    with path.open("rb") as fh:   # decoded line by line, so a bad byte is reported with its line
        for lineno, raw in enumerate(fh, start=1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{where}: not valid UTF-8 (byte 0x{raw[err.start]:02x} at column "
                                 f"{err.start + 1}); re-save the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{where}: invalid JSON ({err.msg})") from None
            yield lineno, where, rec


def read_text(path: str | Path, what: str = "file") -> str:
    """A UTF-8 text file, or one error naming it (missing, unreadable, or not UTF-8 and where)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist")
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ValueError(f"{path}:{line}: not valid UTF-8 (byte 0x{data[err.start]:02x}); "
                         f"re-save the file as UTF-8") from None


def check_writable(path: str | Path, what: str = "output") -> None:
    """Fail before any work if ``path`` (a file or directory to be made) cannot be written.

    Probes the nearest existing ancestor with a temporary file, removed at once, because
    permission bits say nothing about a read-only mount, and root passes every access() check
    but that one. Leaves nothing behind."""
    path = Path(path).absolute()
    probe_dir = path if path.is_dir() else path.parent
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir():
        raise NotADirectoryError(f"{what} {path}: {probe_dir} is a file, not a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=".negfree-write-probe.", dir=probe_dir)
    except OSError as err:
        raise OSError(err.errno, f"{what} {path} is not writable: {err.strerror}", str(probe_dir)) from None
    os.close(fd)
    os.unlink(tmp)


def read_progress(partial: Path, header: dict, what: str, unlabelled: str = "") -> list[bytes]:
    """The finished lines of a resumable job's progress file (negfree score and generate): a
    header line equal to ``header``, then one complete line per finished unit. A line cut by a
    kill is dropped (and the file trimmed to the complete lines); a file of another kind or
    configuration is refused, naming the differing config keys (``unlabelled`` when none do)."""
    import json

    partial = Path(partial)
    if not partial.exists():
        return []
    data = partial.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    lines = complete.splitlines(keepends=True)
    if not lines:
        return []
    try:
        old = json.loads(lines[0])
    except json.JSONDecodeError:
        old = None
    if not isinstance(old, dict) or old.get("format") != header.get("format"):
        raise ValueError(f"{partial}: not a negfree {what} progress file; delete it to start over")
    if old != header:
        diff = sorted(k for k in set(old.get("config", {})) | set(header["config"])
                      if old.get("config", {}).get(k) != header["config"].get(k))
        raise ValueError(f"{partial}: left by a run with a different configuration "
                         f"({', '.join(diff) or unlabelled}); delete it to start over")
    if len(complete) != len(data):
        partial.write_bytes(complete)
    return lines[1:]
