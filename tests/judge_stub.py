"""A stub OpenAI-compatible chat-completions server for the judge tests, on 127.0.0.1.

In process::

    with StubServer(log_path, script={1: ("429", 2.5)}) as stub:
        spec = JudgeSpec("stub", "stub-model", stub.url)

As a subprocess (the kill test)::

    python tests/judge_stub.py --port-file F --log L [--delay 0.05] [--expect-key-env VAR]

It binds an ephemeral port, writes it to F (atomically) and serves until killed.

Behaviour, per request (``n`` counts requests from 1): ``script[n]`` if given, else
``by_hash[content hash]`` if given, else a valid reply ``"... [[A]]"`` or ``"[[B]]"`` (from the
content hash). Actions: ``("ok", text)``, ``("429", retry_after_s or None)``, ``("500",)``,
``("malformed",)`` (a reply with no verdict), ``("garbage",)`` (a body that is not JSON),
``("no_choices",)``, ``("401",)``. With ``expect_key``, a request without that Bearer key gets
a 401 whose message echoes the key it was sent (as a careless server might), before any script.

Every request is logged to the log file as one JSON line: its number, the content hash of its
messages, the model, the action, and ``auth``: "none" (no Authorization header), "ok"
(the expected key), "wrong", or "sent" (a key, none expected). The key itself is never logged.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PAIR_TEMPLATE = ("[System] Compare the two answers to the question. End with [[A]] if A is better, "
                 "[[B]] if B is better.\n[Question]\n{instruction}\n[Answer A]\n{a}\n[Answer B]\n{b}")


def messages_hash(messages) -> str:
    """The content hash the stub logs: sha256 of the canonical JSON of the messages."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def pair_messages(instruction: str, a: str, b: str, template: str = PAIR_TEMPLATE) -> list[dict]:
    return [{"role": "user", "content": template.format(instruction=instruction, a=a, b=b)}]


def make_request(i: int, order: str = "ab", template: str = PAIR_TEMPLATE):
    """The i-th pairwise request of the tests (outputs swapped for order "ba")."""
    from negfree.evaluate.judge import JudgeRequest

    instruction = f"Question {i}: name a prime number above {10 * i}."
    out1, out2 = f"answer one to {i}", f"answer two to {i}"
    a, b = (out1, out2) if order == "ab" else (out2, out1)
    return JudgeRequest(kind="pair", messages=pair_messages(instruction, a, b, template), template=template,
                        instruction=instruction, outputs=(a, b), order=order, id=f"q{i}-{order}")


def make_requests(n: int, order: str = "ab", template: str = PAIR_TEMPLATE) -> list:
    return [make_request(i, order, template) for i in range(n)]


def parse_ab(text: str) -> str:
    """The tests' parser: the last [[A]] or [[B]] in the reply; ValueError when there is none."""
    found = re.findall(r"\[\[([AB])\]\]", text)
    if not found:
        raise ValueError("no [[A]] or [[B]] verdict in the reply")
    return found[-1]


def default_reply(messages) -> str:
    h = messages_hash(messages)
    return f"Both answers were read carefully.\n\n[[{'A' if int(h, 16) % 2 == 0 else 'B'}]]"


class _Handler(BaseHTTPRequestHandler):
    server_version = "negfree-judge-stub/1"

    def log_message(self, *args):   # quiet
        pass

    def do_GET(self):   # the readiness probe of negfree serve-judge (GET /v1/models), as vLLM answers it
        if self.path.rstrip("/").endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": "stub-judge", "object": "model"}]})
        else:
            self._send(404, {"error": {"message": "not found"}})

    def _send(self, status: int, body, headers: dict | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):   # the client gave up (a timeout test)
            pass

    def do_POST(self):
        stub: StubServer = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._send(404, {"error": {"message": f"no route {self.path}"}})
            return
        try:
            payload = json.loads(raw)
            messages = payload["messages"]
        except (ValueError, KeyError, TypeError):
            self._send(400, {"error": {"message": "bad request body"}})
            return
        auth = self.headers.get("Authorization")
        sent_key = auth[len("Bearer "):] if auth and auth.startswith("Bearer ") else None
        if auth is None:
            auth_state = "none"
        elif stub.expect_key is None:
            auth_state = "sent"
        else:
            auth_state = "ok" if sent_key == stub.expect_key else "wrong"
        h = messages_hash(messages)
        action = stub.plan(h, auth_state)
        stub.record({"n": action[0], "hash": h, "model": payload.get("model"), "auth": auth_state,
                     "action": action[1][0], "t": time.time()})
        if stub.delay_s:
            time.sleep(stub.delay_s)
        self._reply(action[1], messages, sent_key, payload)

    def _reply(self, action, messages, sent_key, payload):
        kind = action[0]
        if kind == "401":
            self._send(401, {"error": {"message": f"Incorrect API key provided: {sent_key}. You can find "
                                                  f"your API key at the usual place.",
                                       "type": "invalid_request_error", "code": "invalid_api_key"}})
        elif kind == "429":
            headers = {"Retry-After": str(action[1])} if len(action) > 1 and action[1] is not None else {}
            self._send(429, {"error": {"message": "Rate limit reached, slow down"}}, headers)
        elif kind == "500":
            self._send(500, {"error": {"message": "The server had an error while processing your request"}})
        elif kind == "garbage":
            self._send(200, b"<html>not json</html>")
        elif kind == "no_choices":
            self._send(200, {"id": "x", "object": "chat.completion", "choices": []})
        else:
            text = (action[1] if len(action) > 1 else None) or default_reply(messages)
            if kind == "malformed":
                text = "I find both answers equally interesting and decline to choose."
            self._send(200, {
                "id": "stub-" + messages_hash(messages), "object": "chat.completion",
                "model": payload.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 11, "completion_tokens": 3, "total_tokens": 14}})


class StubServer:
    """The stub on 127.0.0.1 (ephemeral port), served by a daemon thread; see the module doc."""

    def __init__(self, log_path, *, script: dict | None = None, by_hash: dict | None = None,
                 delay_s: float = 0.0, expect_key: str | None = None, port: int = 0):
        self.log_path = Path(log_path)
        self.script = dict(script or {})
        self.by_hash = dict(by_hash or {})
        self.delay_s = delay_s
        self.expect_key = expect_key
        self._lock = threading.Lock()
        self._n = 0
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.stub = self
        self._thread = None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def plan(self, h: str, auth_state: str):
        with self._lock:
            self._n += 1
            n = self._n
        if auth_state == "wrong" or (self.expect_key is not None and auth_state == "none"):
            return n, ("401",)
        if n in self.script:
            return n, tuple(self.script[n])
        if h in self.by_hash:
            return n, tuple(self.by_hash[h])
        return n, ("ok",)

    def record(self, rec: dict) -> None:
        line = json.dumps(rec) + "\n"
        with self._lock, open(self.log_path, "a") as f:
            f.write(line)
            f.flush()

    def requests(self) -> list[dict]:
        """The log so far, one dict per request received."""
        return read_log(self.log_path)

    def start(self) -> "StubServer":
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._httpd.serve_forever(poll_interval=0.05)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "StubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def read_log(path) -> list[dict]:
    """The stub's request log (a line cut by a kill is skipped)."""
    out = []
    path = Path(path)
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="stub OpenAI-compatible judge server (tests only)")
    p.add_argument("--port-file", required=True, help="the bound port is written here")
    p.add_argument("--port", type=int, default=0, help="the port to bind (default: any free one)")
    p.add_argument("--log", required=True, help="JSONL request log")
    p.add_argument("--delay", type=float, default=0.0, help="seconds before each reply")
    p.add_argument("--expect-key-env", help="environment variable holding the key to expect")
    p.add_argument("--script", default="{}", help='JSON {"n": ["429", 1]} for the n-th requests')
    args = p.parse_args(argv)
    expect = os.environ.get(args.expect_key_env) if args.expect_key_env else None
    script = {int(k): v for k, v in json.loads(args.script).items()}
    stub = StubServer(args.log, script=script, delay_s=args.delay, expect_key=expect, port=args.port)
    tmp = Path(args.port_file).with_suffix(".tmp")
    tmp.write_text(str(stub.port))
    os.replace(tmp, args.port_file)
    try:
        stub.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
