"""The end of every bench: its result written to ``--json`` and printed."""
from __future__ import annotations

import json
from pathlib import Path

from negfree.common.io import write_json


def emit(result: dict, json_path: str | Path | None, *, echo: bool = True) -> dict:
    """Write ``result`` to ``json_path`` when one is given (negfree.common.io.write_json: atomic,
    indented, one trailing newline), then print it as indented JSON unless ``echo`` is False (a
    bench that prints its own summary). Returns ``result``."""
    if json_path:
        write_json(json_path, result)
    if echo:
        print(json.dumps(result, indent=2))
    return result
