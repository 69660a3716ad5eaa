"""A judge client for any OpenAI-compatible chat-completions endpoint (the OpenAI API, a vLLM
or other local server), with a content-addressed cache in front of it.

- :class:`JudgeSpec`: which judge (model id, URL, the NAME of the environment variable that
  holds its API key) and how to ask it (temperature, max_tokens, timeout, concurrency, retries).
- :class:`JudgeRequest`: one judgement to make: its template id (``kind``), the rendered
  messages, and the content it was rendered from (template text, instruction, output(s),
  order), which with the judge's model and settings makes its cache key.
- :class:`JudgeClient`: ``judge_many(requests)`` answers every request, in order, as a
  :class:`Judgement`: from the cache when it holds the key, else by asking the judge
  (``max_concurrency`` requests in flight) and appending the parsed verdict to the cache.

Asking: POST ``{base_url}/chat/completions`` with model, messages, temperature and max_tokens.
A 429, 408 or 5xx reply, a refused or dropped connection or a timeout is retried after an
exponential backoff with jitter (``backoff_s * 2**(n-1)``, between half and all of it, capped
at ``max_backoff_s``), or after the server's Retry-After (seconds or an HTTP date; OpenAI's
``retry-after-ms`` too), capped the same way. A reply with no text or that ``parse`` refuses
(ValueError) is malformed: counted, its text kept in the judgement's history, and the request
asked again at once. ``max_retries`` bounds the retries of a request, for all of these
reasons together (``1 + max_retries`` requests at most); a request that still fails comes back
failed (``verdict`` None, ``error`` set), is not cached, and does not stop the others. Any other
4xx (400, 401 bad key, 403, 404 unknown model) stops the whole call at once with one
:class:`JudgeError` line naming the judge and the status: retrying cannot fix it.

The API key is read from ``os.environ[spec.api_key_env]`` when each request is sent and put in
its Authorization header, nowhere else: no object holds it, and every error, log line and
cached text passes through :func:`redact` first. ``api_key_env`` None or "" sends no key (a
local server).
"""
from __future__ import annotations

import email.utils
import http.client
import ipaddress
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from negfree.common.errors import InputError
from negfree.evaluate.judge.cache import CacheEntry, JudgementCache, cache_key

log = logging.getLogger("negfree.judge")

RETRY_STATUSES = frozenset({408, 429})       # and every 5xx
_MIN_SECRET_LEN = 6                          # shorter "keys" are not redacted inside reply texts
_MESSAGE_CHARS = 300                         # of a server's error message, in a JudgeError


class JudgeError(InputError):
    """A judge that fails for good (a bad key, an unknown model, a refused request, too many
    failed judgements): one line naming the judge, never the key."""


class TransportError(Exception):
    """The request did not get an HTTP reply (refused, dropped, timed out): retried."""


# ------------------------------------------------------------------------------ specs
@dataclass(frozen=True)
class JudgeSpec:
    """One judge. Holds the NAME of the environment variable with the key, never the key."""
    name: str                              # display name, in messages and cache entries
    model: str                             # the model id sent to the server (part of the cache key)
    base_url: str                          # e.g. https://api.openai.com/v1, http://127.0.0.1:8000/v1
    api_key_env: str | None = None         # e.g. "OPENAI_API_KEY"; None/"" = send no key
    temperature: float = 0.0
    max_tokens: int = 1024
    request_timeout_s: float = 120.0       # socket timeout: connecting, and each read
    max_concurrency: int = 4
    max_retries: int = 6
    backoff_s: float = 1.0                 # first backoff; doubles per retry
    max_backoff_s: float = 60.0

    def __post_init__(self):
        for f in ("name", "model", "base_url"):
            if not isinstance(getattr(self, f), str) or not getattr(self, f).strip():
                raise ValueError(f"judge spec: {f} must be a non-empty string")
        checks = [("temperature", self.temperature >= 0), ("max_tokens", self.max_tokens >= 1),
                  ("request_timeout_s", self.request_timeout_s > 0),
                  ("max_concurrency", self.max_concurrency >= 1), ("max_retries", self.max_retries >= 0),
                  ("backoff_s", self.backoff_s >= 0), ("max_backoff_s", self.max_backoff_s >= 0)]
        for f, ok in checks:
            if not ok:
                raise ValueError(f"judge {self.name}: {f} = {getattr(self, f)!r} is out of range")

    @classmethod
    def from_dict(cls, d: dict) -> "JudgeSpec":
        """A spec from a config mapping; an inline key is refused (name its variable instead)."""
        secretish = sorted(k for k in d if k in ("api_key", "key", "token", "authorization"))
        if secretish:
            raise ValueError(f"judge {d.get('name', '?')}: do not put the API key in the config "
                             f"({secretish[0]}); export it and name the variable in api_key_env")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"judge {d.get('name', '?')}: unknown setting(s) {', '.join(unknown)} "
                             f"(known: {', '.join(sorted(names))})")
        return cls(**d)

    def api_key(self) -> str | None:
        """The key, read from the environment now (None when no variable is named or it is empty)."""
        if not self.api_key_env:
            return None
        return os.environ.get(self.api_key_env) or None

    def cache_settings(self) -> dict:
        """The settings that change the answer, and so the cache key."""
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}


def redact(text: str, spec: JudgeSpec) -> str:
    """``text`` with the judge's current API key (if any) replaced by ``***``."""
    key = spec.api_key()
    if key and text:
        text = text.replace(key, "***")
    return text


# ---------------------------------------------------------------------------- requests
@dataclass(frozen=True)
class JudgeRequest:
    """One judgement to make. ``messages`` is sent; the other content fields are what it was
    rendered from and go into the cache key (with the messages). ``id`` is the caller's label
    (a question id, say), kept in the cache entry but not in the key."""
    kind: str                              # the template id, e.g. "arena_hard_pairwise"
    messages: Sequence[dict]               # [{"role": "system"|"user"|"assistant", "content": str}, ...]
    template: str                          # the full template text (system prompt included)
    instruction: Any                       # str, or a list of turns; JSON-serialisable
    outputs: Sequence[str]                 # the output(s) judged, as placed in the prompt
    order: str = ""                        # position: "ab" / "ba" for pairwise, "" for one answer
    id: str | None = None

    def __post_init__(self):
        if isinstance(self.outputs, str):
            object.__setattr__(self, "outputs", (self.outputs,))
        else:
            object.__setattr__(self, "outputs", tuple(self.outputs))
        msgs = list(self.messages)
        if not msgs or not all(isinstance(m, dict) and isinstance(m.get("role"), str)
                               and "content" in m for m in msgs):
            raise ValueError(f"judge request {self.id or self.kind}: messages must be a non-empty list "
                             f"of {{'role', 'content'}} mappings")
        object.__setattr__(self, "messages", msgs)

    def key(self, spec: JudgeSpec) -> str:
        return cache_key(spec.model, spec.temperature, spec.max_tokens, self.template,
                         self.instruction, list(self.outputs), self.order, self.messages)


@dataclass
class Judgement:
    """The answer to one request: ``verdict`` is what ``parse`` returned, or None when the
    request failed (``error`` says why). ``cached``: it came from the cache, nothing was sent."""
    request: JudgeRequest = field(repr=False)
    key: str
    verdict: Any = None
    raw: str | None = field(default=None, repr=False)
    usage: dict | None = None
    attempts: int = 0
    cached: bool = False
    error: str | None = None
    history: list = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class JudgeStats:
    """Counts over a client's life: requests sent, answers taken from the cache, retries."""
    sent: int = 0
    cached: int = 0
    judged: int = 0
    failed: int = 0
    malformed: int = 0
    rate_limited: int = 0
    server_errors: int = 0
    connection_errors: int = 0
    slept_s: float = 0.0


# --------------------------------------------------------------------------- transport
@dataclass
class HttpReply:
    status: int
    headers: dict                          # lower-cased names
    body: str


Transport = Callable[[dict, JudgeSpec], HttpReply]

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_VIA_ENV_PROXY = urllib.request.build_opener()


def chat_url(base_url: str) -> str:
    return base_url.rstrip("/") + "/chat/completions"


def _is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def http_transport(payload: dict, spec: JudgeSpec) -> HttpReply:
    """POST ``payload`` to the spec's chat-completions URL (urllib; a loopback server is reached
    directly, anything else through the environment's proxy settings). Raises
    :class:`TransportError` when no HTTP reply comes back, :class:`JudgeError` for a bad URL or
    a named key variable that is not set."""
    url = chat_url(spec.base_url)
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise JudgeError(f"judge {spec.name}: base_url {spec.base_url!r} is not an http(s) URL")
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    key = spec.api_key()
    if spec.api_key_env and not key:
        raise JudgeError(f"judge {spec.name}: environment variable {spec.api_key_env} (its API key) "
                         f"is not set")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    req = urllib.request.Request(url, data=json.dumps(payload).encode("utf-8"), headers=headers,
                                 method="POST")
    opener = _DIRECT if _is_loopback(parts.hostname) else _VIA_ENV_PROXY
    try:
        with opener.open(req, timeout=spec.request_timeout_s) as resp:
            body = resp.read()
            return HttpReply(resp.status, {k.lower(): v for k, v in resp.headers.items()},
                             body.decode("utf-8", "replace"))
    except urllib.error.HTTPError as err:
        try:
            body = err.read()
        except (OSError, http.client.HTTPException):
            body = b""
        hdrs = {k.lower(): v for k, v in err.headers.items()} if err.headers else {}
        return HttpReply(err.code, hdrs, body.decode("utf-8", "replace"))
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        reason = getattr(err, "reason", None) or err
        raise TransportError(f"{type(reason).__name__}: {reason}".rstrip(": ")) from None


# ------------------------------------------------------------------------------ client
class _Malformed(Exception):
    """The reply came back but holds no verdict."""


class _Stop(Exception):
    """Another request failed for good: stop before sending more."""


def _reply_text(body: str) -> tuple[str, dict | None]:
    """The first choice's message text and the usage from a chat-completions body."""
    try:
        obj = json.loads(body)
    except json.JSONDecodeError:
        raise _Malformed("reply is not JSON") from None
    if not isinstance(obj, dict):
        raise _Malformed("reply is not a JSON object")
    choices = obj.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _Malformed("reply has no choices")
    message = choices[0].get("message") or {}
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, list):   # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str) or not content.strip():
        raise _Malformed("reply has no message content")
    usage = obj.get("usage")
    return content, usage if isinstance(usage, dict) else None


def _server_message(body: str) -> str:
    """A server's error message, from an OpenAI-style ``{"error": {"message": ...}}`` or the body."""
    text = body
    try:
        obj = json.loads(body)
        err = obj.get("error") if isinstance(obj, dict) else None
        if isinstance(err, dict) and err.get("message"):
            text = str(err["message"])
        elif isinstance(err, str):
            text = err
        elif isinstance(obj, dict) and obj.get("message"):
            text = str(obj["message"])
    except (json.JSONDecodeError, AttributeError):
        pass
    text = " ".join(str(text).split())
    return text[:_MESSAGE_CHARS] + ("..." if len(text) > _MESSAGE_CHARS else "")


def retry_after_s(headers: dict, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``retry-after`` (seconds or an
    HTTP date); None when absent or unreadable."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class JudgeClient:
    """Judges requests with ``spec``'s judge through ``cache``; ``parse(reply_text)`` turns a
    reply into a JSON-serialisable verdict or raises ValueError for a malformed one.

    ``transport`` (default :func:`http_transport`) sends one payload and returns the HTTP reply;
    :func:`negfree.evaluate.judge.offline.offline_transport` answers without a server through
    the same code. ``sleep`` and ``rng`` are injectable so tests neither wait nor vary."""

    def __init__(self, spec: JudgeSpec, cache: JudgementCache, parse: Callable[[str], Any], *,
                 transport: Transport | None = None, sleep: Callable[[float], Any] = time.sleep,
                 rng: random.Random | None = None):
        self.spec = spec
        self.cache = cache
        self.parse = parse
        self.transport = transport or http_transport
        self.sleep = sleep
        self.rng = rng or random.Random()
        self.stats = JudgeStats()
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JudgeClient({self.spec!r}, {self.cache!r})"

    # -------------------------------------------------------------------- public
    def judge(self, request: JudgeRequest) -> Judgement:
        return self.judge_many([request])[0]

    def judge_many(self, requests: Sequence[JudgeRequest]) -> list[Judgement]:
        """One :class:`Judgement` per request, in order. Cached keys are never sent; each
        distinct uncached key is sent once (``max_concurrency`` at a time), and cached as soon
        as it is parsed. Raises :class:`JudgeError` (after the requests in flight end) when the
        judge refuses a request for good (a 4xx other than 408/429)."""
        requests = list(requests)
        keys = [r.key(self.spec) for r in requests]
        results: dict[str, Judgement] = {}
        todo: dict[str, JudgeRequest] = {}
        for req, key in zip(requests, keys):
            if key in results or key in todo:
                continue
            entry = self.cache.get(key)
            if entry is not None:
                results[key] = Judgement(req, key, entry.verdict, entry.raw, entry.usage, entry.attempts,
                                         cached=True, history=list(entry.history))
                self._count(cached=1)
            else:
                todo[key] = req
        if todo:
            log.info(redact(f"judge {self.spec.name}: {len(todo)} to ask, {len(results)} cached", self.spec))
            self.cache.open_for_writing()
            results.update(self._ask_all(todo))
        out = []
        for req, key in zip(requests, keys):
            j = results[key]
            out.append(j if j.request is req else Judgement(req, key, j.verdict, j.raw, j.usage, j.attempts,
                                                            j.cached, j.error, list(j.history)))
        return out

    # ------------------------------------------------------------------- workers
    def _count(self, **deltas) -> None:
        with self._stats_lock:
            for k, v in deltas.items():
                setattr(self.stats, k, getattr(self.stats, k) + v)

    def _ask_all(self, todo: dict[str, JudgeRequest]) -> dict[str, Judgement]:
        stop = threading.Event()
        done: dict[str, Judgement] = {}
        total, step = len(todo), max(1, len(todo) // 10)
        pool = ThreadPoolExecutor(max_workers=min(self.spec.max_concurrency, total),
                                  thread_name_prefix="judge")
        try:
            futures = {pool.submit(self._ask_one, req, key, stop): key for key, req in todo.items()}
            pending = set(futures)
            fatal: BaseException | None = None
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    if fut.cancelled():
                        continue
                    err = fut.exception()
                    if err is None:
                        done[futures[fut]] = fut.result()
                        if len(done) % step == 0 or len(done) == total:
                            log.info(f"judge {self.spec.name}: {len(done)}/{total} asked")
                    elif not isinstance(err, _Stop) and fatal is None:
                        fatal = err
                        stop.set()
                        for other in pending:
                            other.cancel()
            if fatal is not None:
                raise fatal
        finally:
            stop.set()
            pool.shutdown(wait=True, cancel_futures=True)
        return done

    def _backoff(self, retry: int) -> float:
        full = min(self.spec.max_backoff_s, self.spec.backoff_s * 2 ** (retry - 1))
        return full / 2 + self.rng.uniform(0, full / 2)

    def _fatal(self, reply: HttpReply) -> JudgeError:
        spec = self.spec
        reason = http.client.responses.get(reply.status, "")
        hint = ""
        if reply.status in (401, 403):
            hint = (f"; check the API key in ${spec.api_key_env}" if spec.api_key_env
                    else "; the server wants an API key: name its variable in api_key_env")
        elif reply.status == 404:
            hint = f"; check base_url ({spec.base_url}) and model ({spec.model})"
        msg = _server_message(reply.body)
        text = (f"judge {spec.name} ({spec.model} at {spec.base_url}) refused the request: "
                f"HTTP {reply.status}{' ' + reason if reason else ''}{': ' + msg if msg else ''}{hint}")
        return JudgeError(redact(" ".join(text.split()), spec))

    def _ask_one(self, req: JudgeRequest, key: str, stop: threading.Event) -> Judgement:
        spec = self.spec
        payload = {"model": spec.model, "messages": req.messages, "temperature": spec.temperature,
                   "max_tokens": spec.max_tokens}
        history: list[dict] = []
        label = req.id or key[:12]
        last = "no attempt"
        attempts = 0
        for attempt in range(1, spec.max_retries + 2):
            if stop.is_set():
                raise _Stop()
            attempts = attempt
            wait_s = 0.0
            self._count(sent=1)
            try:
                reply = self.transport(payload, spec)
            except JudgeError:
                stop.set()      # no other request starts after a refusal
                raise
            except TransportError as err:
                last = redact(f"connection: {err}", spec)
                self._count(connection_errors=1)
                wait_s = self._backoff(attempt)
                history.append({"attempt": attempt, "error": last})
            else:
                if reply.status == 200:
                    try:
                        text, usage = _reply_text(reply.body)
                    except _Malformed as err:
                        text, usage, problem = redact(reply.body[:2000], spec), None, str(err)
                    else:
                        try:
                            verdict = self.parse(text)
                        except ValueError as err:
                            problem = f"parse: {' '.join(str(err).split())[:200]}"
                        else:
                            return self._success(req, key, verdict, text, usage, attempt, history)
                    last = redact(f"malformed reply ({problem})", spec)
                    self._count(malformed=1)
                    history.append({"attempt": attempt, "error": last, "raw": self._clean_raw(text)})
                elif reply.status in RETRY_STATUSES or reply.status >= 500:
                    msg = _server_message(reply.body)
                    last = redact(f"HTTP {reply.status}{': ' + msg if msg else ''}", spec)
                    self._count(**({"rate_limited": 1} if reply.status == 429 else {"server_errors": 1}))
                    hinted = retry_after_s(reply.headers)
                    wait_s = (min(spec.max_backoff_s, hinted) if hinted is not None
                              else self._backoff(attempt))
                    history.append({"attempt": attempt, "error": last})
                else:
                    stop.set()
                    raise self._fatal(reply)
            if attempt <= spec.max_retries:
                log.info(f"judge {spec.name}: {label}: {last}; retry {attempt}/{spec.max_retries}"
                         + (f" in {wait_s:.1f}s" if wait_s else ""))
                if wait_s > 0:
                    if stop.is_set():
                        raise _Stop()
                    self._count(slept_s=wait_s)
                    if self.sleep is time.sleep:
                        stop.wait(wait_s)       # a refusal elsewhere cuts the wait short
                    else:
                        self.sleep(wait_s)
        self._count(failed=1)
        error = f"judge {spec.name}: {label}: failed after {attempts} attempt(s); last: {last}"
        log.warning(error)
        return Judgement(req, key, None, None, None, attempts, cached=False, error=error, history=history)

    def _clean_raw(self, text: str) -> str:
        key = self.spec.api_key()
        if key and len(key) >= _MIN_SECRET_LEN:
            text = text.replace(key, "***")
        return text

    def _success(self, req, key, verdict, text, usage, attempt, history) -> Judgement:
        spec = self.spec
        raw = self._clean_raw(text)
        entry = CacheEntry(key=key, verdict=verdict, raw=raw, usage=usage, attempts=attempt,
                           history=history, judge=spec.name, model=spec.model, kind=req.kind,
                           order=req.order, request_id=req.id,
                           created=datetime.now(timezone.utc).isoformat(timespec="seconds"))
        self.cache.put(entry)
        self._count(judged=1)
        return Judgement(req, key, verdict, raw, usage, attempt, cached=False, history=history)


def require_all(judgements: Sequence[Judgement], spec: JudgeSpec) -> list[Judgement]:
    """``judgements`` when all succeeded; else one :class:`JudgeError` line counting the failures
    and quoting the first (the successes are cached, so a rerun asks only the failed ones)."""
    failed = [j for j in judgements if not j.ok]
    if failed:
        raise JudgeError(redact(f"judge {spec.name}: {len(failed)} of {len(judgements)} judgements failed "
                                f"(first: {failed[0].error}); rerun to ask them again, the "
                                f"{len(judgements) - len(failed)} others are cached", spec))
    return list(judgements)
