"""The on-disk phrase bank cache: a restart with the same inputs plays at once.

A bank is stored as phrase bank JSON (``phrases.save_bank``, atomic) under
``<cache_dir>/banks/<key>.json``. The key is a sha256 over everything that changes
what the generator writes:

- the chart's content as parsed (title, tempo, time, key, style and every bar's chords
  with their beats) -- not its file name, so moving or reformatting a chart keeps its bank;
- the model's identity: for a local directory its resolved path plus name, size and
  mtime of each file in it (a retrained model misses the cache); for a hub id the id;
- the adapter's identity (directory, style name resolved in the model's ``adapters/``,
  or the style the chart names when that picks an adapter);
- every GenerationSettings field that changes the output (all of them except model,
  adapter, seed and cache_dir, which are keyed on their own or change nothing);
- the seed; the kind of matrix products asked for (MELODYFLOW_MATMUL, see fastllama.py:
  bfloat16 and float32 products sample slightly different phrases from the same seed) and
  of attention (compiled or torch's, see kernels.py: they round differently too);
  the package version and cache format (new code, new banks); and the generation rules
  (the metrical constraint's ``RULES``, the register pull's and the seams' constants in
  music/instruments.py), which change the bank without a new package version.

Seeds: a request with ``seed=None`` keys on "unseeded": that entry holds the *latest*
bank made for those inputs without a seed (the bank records the seed it was made with),
so a daemon restarted without ``--seed`` plays at once. The worker also stores every
bank under its actual seed, so ``--seed N`` with the seed a bank reports finds it.

Nothing here imports torch: the daemon's parent process computes keys and reads the
cache before it ever asks the generator child.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melodyflowd import __version__
from melodyflowd.generate import metrical
from melodyflowd.generate.environment import attention_kind, environment
from melodyflowd.generate.model import (  # model.py imports torch lazily
    DEFAULT_MODEL_DIR,
    adapter_for,
)
from melodyflowd.music import instruments

if TYPE_CHECKING:
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.phrases import PhraseBank
    from melodyflowd.settings import GenerationSettings

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
MAX_ENTRIES = 256          # oldest banks beyond this are deleted when a new one is stored
# GenerationSettings fields that are keyed on their own or do not change the bank.
_NOT_SETTINGS = frozenset({"model", "adapter", "seed", "cache_dir"})


def chart_identity(chart: Chart) -> dict[str, Any]:
    """The chart's content as plain data: what the generator sees, not where it came from."""
    identity = {
        "title": chart.title,
        "tempo": float(chart.tempo),
        "time": list(chart.time),
        "key": chart.key,
        "style": chart.style,
        "bars": [[[span.chord.symbol, float(span.start_beat), float(span.beats)]
                  for span in bar.chords] for bar in chart.bars],
    }
    if any(bar.time for bar in chart.bars):       # (a chart in one meter keeps its key)
        identity["meters"] = [list(bar.time) if bar.time else None for bar in chart.bars]
    return identity


def _dir_identity(path: Path, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Resolved path plus (name, size, mtime_ns) of each regular file directly inside."""
    files = []
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        entries = []
    for entry in entries:
        if entry.name in skip or entry.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file():
                stat = entry.stat()
                files.append([entry.name, stat.st_size, stat.st_mtime_ns])
    return {"dir": str(path.resolve()), "files": files}


def model_dir_for(spec: str | None) -> Path | None:
    """The local directory a model spec names (None = the embedded default), or None for a
    hub id."""
    if spec is None or spec == "default":
        return DEFAULT_MODEL_DIR
    path = Path(os.path.expanduser(spec))
    return path if path.is_dir() else None


def model_identity(spec: str | None) -> dict[str, Any]:
    directory = model_dir_for(spec)
    if directory is None:
        return {"hub": spec}
    return _dir_identity(directory, skip=frozenset({"adapters"}))


def adapter_identity(model_spec: str | None, adapter: str | None) -> dict[str, Any] | None:
    """An adapter directory or a style name in the model's adapters/; None for no adapter."""
    if not adapter:
        return None
    path = Path(os.path.expanduser(adapter))
    if path.is_dir():
        return _dir_identity(path)
    model_dir = model_dir_for(model_spec)
    if model_dir is not None and (model_dir / "adapters" / adapter).is_dir():
        return {"style": adapter, **_dir_identity(model_dir / "adapters" / adapter)}
    return {"name": adapter}


def settings_identity(generation: GenerationSettings) -> dict[str, Any]:
    """The GenerationSettings fields that change what is generated (new fields count too)."""
    return {f.name: getattr(generation, f.name) for f in dataclasses.fields(generation)
            if f.name not in _NOT_SETTINGS}


def rules_identity() -> dict[str, Any]:
    """The versions of the generation rules: a build with other rules makes other banks."""
    return {"metrical": metrical.RULES,
            "register": [instruments.CENTRE_SLACK, instruments.SEAM_RANGE,
                         instruments.SEAM_BEATS, instruments.ARC_DEPTH, instruments.ARC_BEATS]}


def key_material(chart: Chart, generation: GenerationSettings) -> dict[str, Any]:
    return {
        "format": CACHE_FORMAT,
        "version": __version__,
        "rules": rules_identity(),
        "chart": chart_identity(chart),
        "model": model_identity(generation.model),
        "adapter": adapter_identity(generation.model, adapter_for(
            generation.model, generation.adapter, chart.style)),
        "settings": settings_identity(generation),
        "seed": "unseeded" if generation.seed is None else int(generation.seed),
        "matmul": environment().matmul,
        "attention": attention_kind(),
    }


def cache_key(chart: Chart, generation: GenerationSettings) -> str:
    """sha256 hex of the inputs that decide the bank. ``generation.seed`` None keys the
    latest unseeded bank for these inputs."""
    text = json.dumps(key_material(chart, generation), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_root(cache_dir: str | os.PathLike[str]) -> Path:
    return Path(os.path.expanduser(os.fspath(cache_dir))) / "banks"


def cache_path(cache_dir: str | os.PathLike[str], key: str) -> Path:
    return cache_root(cache_dir) / f"{key}.json"


def load_cached(cache_dir: str | os.PathLike[str], key: str, *, bars: int | None = None,
                variations: int | None = None, seed: int | None = None,
                generation: GenerationSettings | None = None) -> PhraseBank | None:
    """The cached bank for key, or None. A file that does not load as a bank, or whose shape
    does not match (bar count, variation count, seed, when given; its pitches outside the
    range of `generation`, or else of its own settings), is logged and ignored, so the
    caller generates it again and ``store`` replaces it. A FIFO, device or oversized file
    in its place is not read (files.read_bytes)."""
    from melodyflowd.music.phrases import BankError, check_bank_pitches, load_bank

    path = cache_path(cache_dir, key)
    if not path.exists():
        return None
    try:
        bank = load_bank(str(path))
    except Exception as exc:  # noqa: BLE001 - any damage means: ignore and rebuild
        log.warning("ignoring damaged cache file %s (%s); generating again", path,
                    str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None
    problems = []
    if bars is not None and len(bank.bars) != bars:
        problems.append(f"{len(bank.bars)} bars, expected {bars}")
    if variations is not None and bank.n_variations != variations:
        problems.append(f"{bank.n_variations} variations, expected {variations}")
    if seed is not None and bank.seed != seed:
        problems.append(f"seed {bank.seed}, expected {seed}")
    try:
        if generation is not None:
            check_bank_pitches(bank, str(path), generation.low, generation.high,
                               generation.constraint, generation.instrument)
        else:
            check_bank_pitches(bank, str(path))
    except BankError as exc:
        problems.append(exc.detail)
    if problems:
        log.warning("ignoring cache file %s (%s); generating again", path, "; ".join(problems))
        return None
    with contextlib.suppress(OSError):
        os.utime(path)          # recently used: pruned last
    return bank


def store(cache_dir: str | os.PathLike[str], key: str, bank: PhraseBank) -> Path | None:
    """Write bank under key (atomic). Returns the path, or None (logged) when the cache
    cannot be written: a cache that fails never stops generation."""
    from melodyflowd.music.phrases import save_bank

    path = cache_path(cache_dir, key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        save_bank(bank, str(path))
    except OSError as exc:
        log.warning("cannot write the bank cache %s: %s", path, exc.strerror or exc)
        return None
    prune(cache_dir)
    return path


def prune(cache_dir: str | os.PathLike[str], keep: int = MAX_ENTRIES) -> int:
    """Delete the least recently used banks beyond `keep`; returns how many went."""
    root = cache_root(cache_dir)
    try:
        entries = [(e.stat().st_mtime_ns, e.path) for e in os.scandir(root)
                   if e.name.endswith(".json") and e.is_file()]
    except OSError:
        return 0
    if len(entries) <= keep:
        return 0
    entries.sort()
    removed = 0
    for _, old in entries[:len(entries) - keep]:
        with contextlib.suppress(OSError):
            os.unlink(old)
            removed += 1
    return removed
