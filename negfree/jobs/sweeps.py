"""The runs of an experiment: one per entry of ``methods:``, one per point of each ``sweeps:`` grid.

A sweep block names one method and, in up to three sections, the values it changes::

    sweeps:
      dft_gamma:                      # the sweep's name (its table: results/tables/<exp>/sweep~dft_gamma.md)
        method: dft
        hparams: {gamma: [0.8, 0.85, 0.9, 0.95, 1.0], tau: 1.0}
        train: {num_negatives: 2}     # keys of the train section
        generate: {temperature: 0.7}  # strategy | temperature | num (the negatives' pool)

A list is swept (the grid is the product of every list, in the order written); a
scalar is held fixed for the whole sweep. Every key a sweep sets, swept or fixed,
appears in the run's id, so the path says what ran::

    method~dft/temperature~0.7/num_negatives~2/gamma~0.9/tau~1.0

(generation keys first, then train keys, then hyperparameters, each group in the
order written). Runs of ``methods:`` are ``method~NAME``. A sweep starts from the
registry's paper defaults, not from the ``methods:`` entry of the same method. A
point that computes exactly what a ``methods:`` run computes is that run (trained
once); its own id is kept as an alias.

Everything is checked here, before any job runs: unknown method, unknown or
misplaced key, a hyperparameter outside its range (the registry's check), a pool
smaller than B, two sweeps giving the same id different meanings.
"""
from __future__ import annotations

import itertools
from typing import Any

from negfree.losses import get_method

GENERATE_KEYS = ("strategy", "temperature", "num")   # the keys that name a negatives directory
SECTIONS = ("generate", "train", "hparams")
# train keys that identify the run itself and are set by the workflow, never by a sweep
_NOT_SWEEPABLE = {"method", "model", "data", "out_dir", "hparams", "resume"}


def _train_keys() -> set[str]:
    from negfree.train.loop import DEFAULTS

    return set(DEFAULTS) - _NOT_SWEEPABLE


def _fmt(key: str, value: Any, where: str) -> str:
    text = str(value)
    if not text or "/" in text or "~" in text or any(c.isspace() for c in text):
        raise ValueError(f"{where}: value {value!r} of '{key}' cannot be part of a run path "
                         f"(empty, or contains '/', '~' or whitespace)")
    return text


def _grid(block: dict, where: str) -> list[list[tuple[str, str, Any]]]:
    """Each point: [(section, key, value), ...] over every key the block sets."""
    axes = []
    for section in SECTIONS:
        for key, value in (block.get(section) or {}).items():
            values = value if isinstance(value, list) else [value]
            if not values:
                raise ValueError(f"{where}.{section}.{key}: empty list")
            axes.append([(section, key, v) for v in values])
    return [list(p) for p in itertools.product(*axes)]


def _check_block(name: str, block: Any, train_keys: set[str], kind: str = "sweeps") -> None:
    where = f"{kind}.{name}"
    head = ("method", "init") if kind == "pipelines" else ("method",)
    optional = ("negatives",) if kind == "pipelines" else ()
    if not isinstance(block, dict):
        raise ValueError(f"{where}: must be a mapping with {' and '.join(head)} and sections {', '.join(SECTIONS)}")
    unknown = sorted(set(block) - {*head, *optional, *SECTIONS})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {', '.join(head + optional)}, "
                         f"{', '.join(SECTIONS)}")
    if block.get("negatives", "init") not in ("init", "base"):
        raise ValueError(f"{where}.negatives: {block['negatives']!r}; 'init' (sampled by the starting checkpoint) "
                         f"or 'base' (the base model's pool, scored under the starting checkpoint)")
    for key in head:
        if key not in block:
            raise ValueError(f"{where}: missing '{key}'")
    if kind == "sweeps" and not any(block.get(s) for s in SECTIONS):
        raise ValueError(f"{where}: sets nothing (give values under {', '.join(SECTIONS)})")
    for section in SECTIONS:
        if block.get(section) is not None and not isinstance(block[section], dict):
            raise ValueError(f"{where}.{section}: must be a mapping of key -> value or list of values")
    bad = sorted(set(block.get("generate") or {}) - set(GENERATE_KEYS))
    if bad:
        raise ValueError(f"{where}.generate: {bad} cannot be swept; sweepable: {', '.join(GENERATE_KEYS)}")
    bad = sorted(set(block.get("train") or {}) - train_keys)
    if bad:
        raise ValueError(f"{where}.train: unknown or unsweepable key(s) {bad}")
    seen: dict[str, str] = {}
    for section in SECTIONS:
        for key in block.get(section) or {}:
            if key in seen:
                raise ValueError(f"{where}: '{key}' is set in both {seen[key]} and {section}")
            seen[key] = section


def _spec(method_name: str, hparams: dict, train: dict, generate: dict, default_b: int, where: str,
          init: str | None = None, negatives: str = "init") -> dict:
    try:
        method = get_method(method_name)
    except (KeyError, ValueError) as e:
        raise ValueError(f"{where}: {e.args[0] if e.args else e}") from None
    try:
        method.resolve(hparams)          # unknown hyperparameter or value out of range
    except (KeyError, ValueError) as e:
        raise ValueError(f"{where}: {e.args[0] if e.args else e}") from None
    b = train.get("num_negatives", default_b)
    if method.needs_negatives and b > generate["num"]:
        raise ValueError(f"{where}: B = num_negatives = {b} exceeds the pool of {generate['num']} negatives "
                         f"per prompt (generate.num)")
    spec = {"method": method_name, "hparams": dict(hparams), "train": dict(train), "generate": dict(generate)}
    if init is not None:
        spec["init"] = init
        if negatives == "base":
            spec["negatives"] = "base"
    return spec


def _effective(spec: dict, train: dict) -> tuple:
    """What a run computes: method, resolved hyperparameters, train and generation settings."""
    hp = get_method(spec["method"]).resolve(spec["hparams"])
    key = lambda d: tuple(sorted((k, repr(v)) for k, v in d.items()))  # noqa: E731
    return (spec["method"], key(hp), key({**train, **spec["train"]}), key(spec["generate"]),
            spec.get("init"), spec.get("negatives"))


def expand_runs(methods: dict, sweeps: dict, generate: dict, train: dict | int,
                pipelines: dict | None = None) -> tuple[dict, dict, dict]:
    """(run id -> {method, hparams, train, generate[, init]}, sweep name -> [run ids in grid order],
    alias -> run id).

    ``pipelines`` are blocks like sweeps with an ``init`` (the ``methods:`` run whose final
    weights the run starts from, ``sft``, or ``<experiment>.<method>`` of another experiment);
    their ids start ``method~M/init~X`` and they make no sweep table. Their negatives are sampled
    by that checkpoint, or with ``negatives: base`` taken from the base model's pool and scored
    under the checkpoint (id ``method~M/init~X/negatives~base/...``).

    ``train`` is the experiment's train section (an int is read as its num_negatives). A sweep
    point that computes exactly what a ``methods:`` run computes (same method, resolved
    hyperparameters, train and generation settings) is not trained twice: the sweep lists that
    run, and the point's own id becomes an alias of it (``paper_tables`` may use either)."""
    train = {"num_negatives": train} if isinstance(train, int) else dict(train)
    default_b = train.get("num_negatives", 2)
    specs: dict[str, dict] = {}
    for name, hp in (methods or {}).items():
        specs[f"method~{name}"] = _spec(name, hp or {}, {}, generate, default_b, f"methods.{name}")
    same = {_effective(sp, train): rid for rid, sp in specs.items()}
    aliases: dict[str, str] = {}
    train_keys = _train_keys()
    groups: dict[str, list[str]] = {}
    blocks = [("sweeps", n, b) for n, b in (sweeps or {}).items()]
    blocks += [("pipelines", n, b) for n, b in (pipelines or {}).items()]
    for kind, sname, block in blocks:
        where = f"{kind}.{sname}"
        _check_block(sname, block, train_keys, kind)
        init = None
        if kind == "pipelines":
            init = _fmt("init", block["init"], where)
            local = init.split(".", 1)[-1] if "." in init else init
            if "." not in init and local not in (methods or {}):
                raise ValueError(f"{where}: init {init!r} is not a methods: run of this experiment (methods: "
                                 f"{', '.join(methods or {})}); another experiment's run is <experiment>.<method>")
        ids = []
        for point in _grid(block, where):
            parts = {s: {} for s in SECTIONS}
            for section, key, value in point:
                parts[section][key] = value
            neg = block.get("negatives", "init")
            rid = f"method~{block['method']}" + (f"/init~{init}" if init else "") + (
                "/negatives~base" if neg == "base" else "") + "".join(
                f"/{k}~{_fmt(k, v, where)}" for _, k, v in point)
            spec = _spec(block["method"], parts["hparams"], parts["train"], {**generate, **parts["generate"]},
                         default_b, f"{where} ({rid})", init, neg)
            if rid in specs and specs[rid] != spec:
                raise ValueError(f"{where}: run {rid} is defined twice with different settings")
            main = same.get(_effective(spec, train))
            if main is not None and main != rid:
                aliases[rid] = main
                rid = main
            else:
                specs[rid] = spec
                same.setdefault(_effective(spec, train), rid)
            if rid not in ids:
                ids.append(rid)
        if kind == "sweeps":
            groups[sname] = ids
    return specs, groups, aliases


def sweep_settings(sweep: dict) -> list[dict[str, Any]]:
    """The settings of each grid point of one sweep block, in grid order (the sweep table's columns)."""
    return [{k: v for _, k, v in point} for point in _grid(sweep, "sweep")]


