"""Download the judged benchmarks' official files, as pinned in ``configs/judged/sources.yaml``.

``negfree fetch-judged-data --protocol {arena_hard,mt_bench,wildbench,alpaca_eval,all}`` runs on the
cluster's submit host (the one machine with internet) before the judged jobs, which then read only
local files. For each protocol it fills ``<out>/<protocol>/``:

- ``mt_bench``:    ``questions.jsonl``, ``reference_answers.jsonl``, ``judge_prompts.jsonl``
- ``arena_hard``:  ``questions.jsonl``, ``baseline_answers.jsonl``, ``judge_config.yaml``
- ``wildbench``:   ``score_template.md``, ``test_parquet.parquet`` (the hub dataset's file) and
  ``questions.jsonl`` converted from it (one JSON object per row, every column, lists as lists)
- ``alpaca_eval``: ``reference_ae1.json`` (AlpacaEval 1's reference, text_davinci_003's outputs) and
  ``reference_ae2.json`` (AlpacaEval 2's, gpt4_1106_preview's), the GitHub leaderboard files of
  roles ``reference_outputs_ae1`` / ``reference_outputs_ae2``. Each holds the 805 instructions in
  AlpacaEval's order, so it is also the protocols' instructions file (negfree alpaca-eval). Only
  these two roles are fetched: the judge files pinned beside them are for the record (the
  judging uses the installed alpaca_eval's copies), and so is the hub copy (``hf_dataset``, not
  pinned by sha256).

Every file role of the protocol's ``files`` (and, for WildBench, of ``hf_dataset.files``) lands at
``<role><ext>``, ``ext`` being the suffix of its path (AlpacaEval: the names above, :data:`NAMES`).
Then ``manifest.json`` (revisions; per file its url, sha256, bytes and ``verified``) and, last, the
empty marker ``.fetched`` that the workflow's rule waits for.

Rules:

- Downloads go through urllib with a timeout and up to :data:`RETRIES` retries (exponential
  backoff) on connection errors, timeouts, short reads, HTTP 429 and 5xx; other HTTP errors stop
  at once. Each file streams into a temporary name beside its final one and is moved into place
  only once its sha256 (and its byte count, where pinned) matched; a mismatch stops with one line
  naming the file, the expected and the observed sha256, leaving nothing at the final name and no
  marker.
- A file already present with the pinned sha256 is not downloaded again (nor rewritten), and
  neither are the manifest and marker when nothing changed, so a rerun leaves their times alone.
- Where sources.yaml gives ``sha256: null`` the file is downloaded, its observed sha256 recorded
  in the manifest with ``verified: false`` (and said on the console); a rerun keeps it when its
  bytes still hash to what the manifest recorded.
- Hugging Face files are asked with ``Authorization: Bearer $HF_TOKEN`` when HF_TOKEN is set (a
  gated or rate-limited hub); the header is kept on same-host redirects only (never sent on to
  the CDN) and the token is never written anywhere.
- ``HF_HUB_OFFLINE=1`` makes the command refuse in one line: this is the command that needs the
  network, so it must run where the hub is reachable.

Mirrors (and tests): ``--base-url-map FROM=TO`` (repeatable) or the environment variable
``NEGFREE_JUDGED_MIRROR`` replaces a URL prefix, e.g.
``NEGFREE_JUDGED_MIRROR=https://raw.githubusercontent.com=https://mirror.example/gh,https://huggingface.co=https://mirror.example/hf``;
a bare base URL (``NEGFREE_JUDGED_MIRROR=http://127.0.0.1:8000``) stands for both
``https://raw.githubusercontent.com`` and ``https://huggingface.co``, so the mirror serves the two
hosts' URL paths side by side (``/<owner>/<repo>/<revision>/<path>`` and
``/datasets/<id>/resolve/<revision>/<path>``). The checks are the same: a mirror must serve the
pinned bytes. The manifest keeps the pinned url and adds ``fetched_from`` for a file a mirror
served. HF_TOKEN goes to wherever the Hugging Face files are mapped.
"""
from __future__ import annotations

import base64
import datetime as _dt
import decimal
import hashlib
import http.client
import json
import math
import os
import re
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable
from urllib.parse import urlsplit

from negfree.common.io import atomic_write_bytes, check_writable, read_text

PROTOCOLS = ("arena_hard", "mt_bench", "wildbench", "alpaca_eval")
#: the files each protocol must end up with (the judged jobs read these names)
EXPECTED = {
    "mt_bench": ("questions.jsonl", "reference_answers.jsonl", "judge_prompts.jsonl"),
    "arena_hard": ("questions.jsonl", "baseline_answers.jsonl", "judge_config.yaml"),
    "wildbench": ("score_template.md", "test_parquet.parquet", "questions.jsonl"),
    "alpaca_eval": ("reference_ae1.json", "reference_ae2.json"),
}
#: protocols whose files land under names of their own, and only those roles are fetched
#: (negfree.evaluate.alpaca reads these names)
NAMES = {
    "alpaca_eval": {"reference_outputs_ae1": "reference_ae1.json", "reference_outputs_ae2": "reference_ae2.json"},
}
GITHUB_RAW = "https://raw.githubusercontent.com"
HF_HUB = "https://huggingface.co"
HOSTS = (GITHUB_RAW, HF_HUB)
MIRROR_ENV = "NEGFREE_JUDGED_MIRROR"
MANIFEST = "manifest.json"
MARKER = ".fetched"
TIMEOUT_S = 60.0
RETRIES = 3
BACKOFF_S = 2.0
USER_AGENT = "negfree-fetch-judged-data"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20
_UMASK = os.umask(0)
os.umask(_UMASK)


@dataclass(frozen=True)
class Pin:
    """One file to fetch: its role in sources.yaml, its local name and what it must be."""
    protocol: str
    role: str
    name: str
    url: str
    revision: str
    sha256: str | None
    bytes: int | None
    hub: bool   # a Hugging Face file (HF_TOKEN applies)


# --------------------------------------------------------------------------- sources.yaml
def _entry(entry, where: str, revision: str) -> tuple[str, str | None, int | None]:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with url, sha256 and bytes")
    url = entry.get("url")
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ValueError(f"{where}.url: expected an https:// URL, got {url!r}")
    if f"/{revision}/" not in url:
        raise ValueError(f"{where}.url: {url} is not at the pinned revision {revision}")
    sha = entry.get("sha256")
    if sha is not None and not (isinstance(sha, str) and _SHA256.match(sha)):
        raise ValueError(f"{where}.sha256: expected 64 lowercase hex digits or null, got {sha!r}")
    size = entry.get("bytes")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"{where}.bytes: expected a byte count or null, got {size!r}")
    return url, sha, size


def _name(role: str, entry: dict, url: str) -> str:
    suffix = PurePosixPath(entry.get("path") or urlsplit(url).path).suffix
    return f"{role}{suffix}"


def _revision(section: dict, where: str) -> str:
    rev = section.get("revision")
    if not isinstance(rev, str) or not rev.strip():
        raise ValueError(f"{where}.revision: missing (a pinned commit)")
    return rev


def load_pins(sources: str | Path, protocol: str) -> tuple[dict, list[Pin]]:
    """The protocol's section of sources.yaml (repo, revisions) and its files, checked: every URL
    at its pinned revision, sha256 64 hex digits or null, bytes a count or null, and the files the
    judged jobs need all present."""
    import yaml

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)} or all")
    try:
        doc = yaml.safe_load(read_text(sources, "sources file"))
    except yaml.YAMLError as err:
        raise ValueError(f"{sources}: not valid YAML ({' '.join(str(err).split())})") from None
    section = doc.get(protocol) if isinstance(doc, dict) else None
    if not isinstance(section, dict):
        raise ValueError(f"{sources}: no '{protocol}' section")
    rev = _revision(section, f"{sources}: {protocol}")
    files = section.get("files")
    if not isinstance(files, dict) or not files:
        raise ValueError(f"{sources}: {protocol}.files: missing or empty")
    pins: list[Pin] = []
    named = NAMES.get(protocol)
    for role, entry in files.items():
        url, sha, size = _entry(entry, f"{sources}: {protocol}.files.{role}", rev)
        if named is not None and str(role) not in named:
            continue   # pinned for the record, not fetched (checked all the same)
        name = named[str(role)] if named is not None else _name(str(role), entry, url)
        pins.append(Pin(protocol, str(role), name, url, rev, sha, size, False))
    meta = {"repo": section.get("repo"), "revision": rev}
    if protocol == "wildbench":
        hf = section.get("hf_dataset")
        where = f"{sources}: wildbench.hf_dataset"
        if not isinstance(hf, dict) or not isinstance(hf.get("files"), dict) or "test_parquet" not in hf["files"]:
            raise ValueError(f"{where}.files.test_parquet: missing (the WildBench v2 tasks)")
        hf_rev = _revision(hf, where)
        for role, entry in hf["files"].items():
            url, sha, size = _entry(entry, f"{where}.files.{role}", hf_rev)
            pins.append(Pin(protocol, str(role), _name(str(role), entry, url), url, hf_rev, sha, size, True))
        meta["hf_dataset"] = {k: hf.get(k) for k in ("id", "config", "split", "revision")}
    names = [p.name for p in pins]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup or (protocol == "wildbench" and "questions.jsonl" in names):
        raise ValueError(f"{sources}: {protocol}: two file roles would land at {(dup or ['questions.jsonl'])[0]}")
    derived = {"questions.jsonl"} if protocol == "wildbench" else set()
    missing = [n for n in EXPECTED[protocol] if n not in names and n not in derived]
    if missing:
        by_name = {v: k for k, v in (named or {}).items()}
        roles = ", ".join(by_name.get(n, PurePosixPath(n).stem) for n in missing)
        raise ValueError(f"{sources}: {protocol} lacks the file role(s) {roles} (for {', '.join(missing)})")
    return meta, pins


# ------------------------------------------------------------------------------ mirrors
def mirror_map(pairs: list[str] | None = None, env: dict | None = None) -> list[tuple[str, str]]:
    """URL prefix replacements: ``--base-url-map FROM=TO`` values, else ``$NEGFREE_JUDGED_MIRROR``
    (``FROM=TO`` pairs separated by commas or spaces, or one bare base URL for both hosts)."""
    items = list(pairs or [])
    if not items:
        value = (os.environ if env is None else env).get(MIRROR_ENV, "").strip()
        if not value:
            return []
        if "=" not in value:
            return [(host, value.rstrip("/")) for host in HOSTS]
        items = value.replace(",", " ").split()
    out = []
    for item in items:
        src, sep, dst = item.partition("=")
        src, dst = src.strip().rstrip("/"), dst.strip().rstrip("/")
        if not sep or not src or not dst:
            raise ValueError(f"base URL map {item!r}: expected FROM=TO, e.g. {HF_HUB}=http://127.0.0.1:8000")
        out.append((src, dst))
    return out


def map_url(url: str, mapping: list[tuple[str, str]]) -> str:
    for src, dst in mapping:
        if url == src or url.startswith(src + "/"):
            return dst + url[len(src):]
    return url


def refuse_offline(env: dict | None = None) -> None:
    value = (os.environ if env is None else env).get("HF_HUB_OFFLINE", "")
    if value.strip().upper() in ("1", "ON", "YES", "TRUE"):
        raise ValueError(f"HF_HUB_OFFLINE={value.strip()} is set, but fetch-judged-data is the one command that "
                         f"needs the network: run it where the hub is reachable with HF_HUB_OFFLINE unset")


# ---------------------------------------------------------------------------- downloads
class _Transient(Exception):
    """A failure worth another try (connection, timeout, short read, HTTP 429/5xx)."""


class _SameHostAuth(urllib.request.HTTPRedirectHandler):
    """Keeps the Authorization header on a redirect within the same host and drops it on any
    other (the hub redirects file downloads to a CDN that must not see the token)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        auth = req.unredirected_hdrs.get("Authorization")
        old, to = urlsplit(req.full_url), urlsplit(newurl)
        if new is not None and auth and (old.scheme, old.netloc) == (to.scheme, to.netloc):
            new.add_unredirected_header("Authorization", auth)
        return new


def _get(url: str, fh, token: str | None, timeout: float) -> tuple[str, int]:
    """Stream ``url`` into ``fh``: (sha256, bytes). Raises _Transient or a one-line ValueError."""
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if token:
        req.add_unredirected_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(_SameHostAuth)
    h, n = hashlib.sha256(), 0
    try:
        with opener.open(req, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            while chunk := resp.read(_CHUNK):
                h.update(chunk)
                fh.write(chunk)
                n += len(chunk)
    except urllib.error.HTTPError as err:
        if err.code == 429 or err.code >= 500:
            raise _Transient(f"HTTP {err.code} {err.reason}") from None
        hint = ""
        if err.code in (401, 403):
            hint = " (a gated or private file: set HF_TOKEN to a token that may read it)" if token is None \
                else " (HF_TOKEN was sent: check that it may read this file)"
        raise ValueError(f"HTTP {err.code} {err.reason}{hint}") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError, http.client.HTTPException) as err:
        raise _Transient(" ".join(str(getattr(err, "reason", err) or type(err).__name__).split())) from None
    if length is not None and length.isdigit() and int(length) != n:
        raise _Transient(f"short read: {n} of {length} bytes")
    return h.hexdigest(), n


def download(pin: Pin, dest: Path, url: str, *, token: str | None = None, timeout: float = TIMEOUT_S,
             retries: int = RETRIES, backoff: float = BACKOFF_S) -> tuple[str, int]:
    """Fetch ``url`` into a temporary name beside ``dest``, check it against ``pin`` and only then
    move it to ``dest``: (sha256, bytes). Nothing is left at ``dest`` or beside it on failure."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(backoff * 2 ** (attempt - 1))
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        try:
            try:
                with os.fdopen(fd, "wb") as fh:
                    sha, n = _get(url, fh, token, timeout)
            except _Transient as err:
                last = str(err)
                continue
            except ValueError as err:
                raise ValueError(f"{dest}: {err} ({url})") from None
            if pin.sha256 is not None and sha != pin.sha256:
                raise ValueError(f"{dest}: sha256 mismatch: expected {pin.sha256}, observed {sha} "
                                 f"({n} bytes from {url}); nothing kept")
            if pin.bytes is not None and n != pin.bytes:
                raise ValueError(f"{dest}: size mismatch: expected {pin.bytes} bytes, observed {n} "
                                 f"(sha256 {sha}, from {url}); nothing kept")
            os.chmod(tmp, 0o666 & ~_UMASK)
            os.replace(tmp, dest)
            return sha, n
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    tries = f"{retries + 1} attempt{'s' if retries else ''}"
    raise OSError(f"{dest}: download failed after {tries}: {last} ({url})")


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _in_place(pin: Pin, dest: Path, old: dict) -> dict | None:
    """The manifest entry of a file already at ``dest`` with the right bytes, else None."""
    if not dest.is_file():
        return None
    sha, size = _sha256_file(dest), dest.stat().st_size
    if pin.bytes is not None and size != pin.bytes:
        return None
    prev = old.get(pin.name) if isinstance(old.get(pin.name), dict) else {}
    if pin.sha256 is not None:
        ok = sha == pin.sha256
    else:   # not pinned: keep what this command fetched and recorded before, unchanged since
        ok = prev.get("url") == pin.url and prev.get("sha256") == sha
    if not ok:
        return None
    rec = _record(pin, sha, size)
    if prev.get("sha256") == sha and prev.get("fetched_from"):
        rec["fetched_from"] = prev["fetched_from"]
    return rec


def _record(pin: Pin, sha: str, size: int) -> dict:
    return {"role": pin.role, "url": pin.url, "revision": pin.revision, "sha256": sha, "bytes": size,
            "verified": pin.sha256 is not None}


# ------------------------------------------------------------------------ parquet -> JSONL
def _plain(value):
    """A parquet cell as JSON: structs as objects, lists as lists, NaN as null."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return base64.b64encode(bytes(value)).decode("ascii")
    return value


def parquet_to_jsonl_bytes(parquet: str | Path) -> tuple[bytes, int]:
    """Every row of a parquet file, every column, as one JSON object per line (ASCII-escaped, so no
    line-separator character can split a record): (the bytes, the row count)."""
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(parquet).to_pylist()
    except Exception as err:   # pyarrow's errors: a truncated or foreign file
        raise ValueError(f"{parquet}: cannot be read as parquet ({' '.join(str(err).split())})") from None
    text = "".join(json.dumps(_plain(r), allow_nan=False) + "\n" for r in rows)
    return text.encode("ascii"), len(rows)


# --------------------------------------------------------------------------- a protocol
def _read_manifest(path: Path) -> dict:
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    files = doc.get("files") if isinstance(doc, dict) else None
    return files if isinstance(files, dict) else {}


def _write_if_changed(path: Path, data: bytes) -> bool:
    if path.is_file() and path.read_bytes() == data:
        return False
    atomic_write_bytes(path, data)
    return True


def fetch_protocol(protocol: str, sources: str | Path, out: str | Path, *, mirror: list[tuple[str, str]] = (),
                   token: str | None = None, timeout: float = TIMEOUT_S, retries: int = RETRIES,
                   backoff: float = BACKOFF_S, log: Callable[[str], None] | None = None) -> dict:
    """One protocol's files into ``<out>/<protocol>/``, then its manifest and marker."""
    say = log or (lambda _line: None)
    meta, pins = load_pins(sources, protocol)
    pdir = Path(out) / protocol
    marker, manifest_path = pdir / MARKER, pdir / MANIFEST
    old = _read_manifest(manifest_path)
    files: dict[str, dict] = {}
    downloaded = 0
    for pin in pins:
        dest = pdir / pin.name
        rec = _in_place(pin, dest, old)
        if rec is not None:
            files[pin.name] = rec
            say(f"{dest}: present, sha256 {'ok' if rec['verified'] else 'as recorded (not pinned)'}")
            continue
        marker.unlink(missing_ok=True)   # the protocol is no longer complete
        if dest.exists() or dest.is_symlink():
            dest.unlink()                # wrong bytes never stay at the final name
        url = map_url(pin.url, mirror)
        sha, size = download(pin, dest, url, token=token if pin.hub else None, timeout=timeout,
                             retries=retries, backoff=backoff)
        downloaded += 1
        files[pin.name] = rec = _record(pin, sha, size)
        if url != pin.url:
            rec["fetched_from"] = url
        if pin.sha256 is None:
            say(f"{dest}: downloaded ({size} bytes); sources.yaml pins no sha256: observed {sha}, "
                f"recorded with verified: false")
        else:
            say(f"{dest}: downloaded ({size} bytes, sha256 ok)")
    if protocol == "wildbench":
        parquet = next(p for p in pins if p.role == "test_parquet")
        data, rows = parquet_to_jsonl_bytes(pdir / parquet.name)
        dest = pdir / "questions.jsonl"
        if dest.is_file() and dest.read_bytes() != data:
            marker.unlink(missing_ok=True)
        if _write_if_changed(dest, data):
            say(f"{dest}: {rows} rows converted from {parquet.name}")
        files["questions.jsonl"] = {"role": "questions", "url": None, "derived_from": parquet.name,
                                    "rows": rows, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data),
                                    "verified": files[parquet.name]["verified"]}
    manifest = {"protocol": protocol, **meta, "files": files}
    text = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    if _write_if_changed(manifest_path, text):
        marker.unlink(missing_ok=True)
    if not marker.exists():
        atomic_write_bytes(marker, b"")
    return {"protocol": protocol, "dir": str(pdir), "downloaded": downloaded, "present": len(pins) - downloaded,
            "files": sorted(files), "unverified": sorted(n for n, r in files.items() if not r["verified"])}


def fetch_judged(protocol: str, sources: str | Path = "configs/judged/sources.yaml", out: str | Path = "work/judged",
                 *, base_url_map: list[str] | None = None, timeout: float = TIMEOUT_S, retries: int = RETRIES,
                 backoff: float = BACKOFF_S, log: Callable[[str], None] | None = None) -> list[dict]:
    """``protocol`` (or ``all``, one after the other) fetched; HF_TOKEN is read here and only
    ever sent as a header."""
    refuse_offline()
    wanted = list(PROTOCOLS) if protocol == "all" else [protocol]
    for p in wanted:
        if p not in PROTOCOLS:
            raise ValueError(f"unknown protocol {p!r}; expected one of {', '.join(PROTOCOLS)} or all")
    mirror = mirror_map(base_url_map)
    for p in wanted:   # every section checked before the first byte is fetched
        load_pins(sources, p)
    check_writable(out, "output directory")
    token = os.environ.get("HF_TOKEN", "").strip() or None
    return [fetch_protocol(p, sources, out, mirror=mirror, token=token, timeout=timeout, retries=retries,
                           backoff=backoff, log=log) for p in wanted]
