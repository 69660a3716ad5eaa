"""One line for bad input: every command runs under :func:`run_reporting_errors`, which turns
bad input (a missing file, bad JSON or YAML, a value out of range, a failed outside service) into
``negfree <command>: <what> (<where>)`` and a non-zero status; anything else is a bug and keeps
its traceback."""
from __future__ import annotations

import os


class InputError(Exception):
    """Bad input or a failed outside service that is not a ValueError or OSError (a judge that
    fails, say): reported in one line like them."""


def _input_errors() -> tuple:
    """What bad input raises (a missing or unreadable file, undecodable bytes, bad JSON or YAML,
    a truncated safetensors file, a value out of range, a failed judge). Imported only when an
    error is being handled, so `negfree methods` stays instant."""
    import yaml
    from safetensors import SafetensorError

    return (ValueError, OSError, FloatingPointError, SafetensorError, yaml.YAMLError, InputError)


def describe_error(err: BaseException) -> str:
    """One line: an OSError as "<reason> (<file>)", anything else as its message, newlines folded."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        text = f"{err.strerror} ({err.filename})"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


def run_reporting_errors(command: str, fn, debug: bool = False):
    """Run ``fn()``; bad input ends the process with one line ``negfree <command>: <what> (<where>)``
    and a non-zero status. The traceback adds nothing there; ``--debug`` or ``NEGFREE_DEBUG=1``
    shows it. Any other exception is a bug and keeps its traceback."""
    debug = debug or os.environ.get("NEGFREE_DEBUG", "") not in ("", "0")
    try:
        return fn()
    except Exception as e:
        if debug or not isinstance(e, _input_errors()):
            raise
        raise SystemExit(f"negfree {command}: {describe_error(e)}") from None

