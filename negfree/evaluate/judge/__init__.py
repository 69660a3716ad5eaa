"""LLM-judge plumbing for the judged benchmarks (AlpacaEval, Arena-Hard, MT-Bench, WildBench).

- ``client``: :class:`JudgeSpec`, :class:`JudgeRequest`, :class:`JudgeClient` (any
  OpenAI-compatible chat-completions endpoint: bounded concurrency, retries with backoff,
  malformed replies asked again, fail-fast on a refused request, the key never written).
- ``cache``: :class:`JudgementCache`, content-addressed and append-only: a judgement is
  asked once, across reruns and tables.
- ``offline``: the OFFLINE judge ``negfree_offline_judge`` (a hash, not a model) for the demo
  and the tests, plugged in as a transport.
"""
from negfree.evaluate.judge.cache import CacheEntry, JudgeCacheError, JudgementCache, cache_key
from negfree.evaluate.judge.client import (HttpReply, JudgeClient, JudgeError, Judgement, JudgeRequest,
                                           JudgeSpec, JudgeStats, TransportError, http_transport, redact,
                                           require_all)
from negfree.evaluate.judge.offline import (OFFLINE_JUDGE_NAME, OfflineTransport, offline_client,
                                            offline_spec, offline_transport)

__all__ = ["CacheEntry", "JudgeCacheError", "JudgementCache", "cache_key", "HttpReply", "JudgeClient",
           "JudgeError", "Judgement", "JudgeRequest", "JudgeSpec", "JudgeStats", "TransportError",
           "http_transport", "redact", "require_all", "OFFLINE_JUDGE_NAME", "OfflineTransport",
           "offline_client", "offline_spec", "offline_transport"]
