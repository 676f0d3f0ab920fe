"""In-process micro-benchmark of the engine's handling time with cold caches.

What bench/latency.py measures in the daemon (perf_counter_ns around the handler inside
ports.py's callback), reproduced without JACK: the same callback wrapper
(`ports._make_callback`, a C-level no-op send), the same chart and bank, the same kind of
play (note-on, a pause, note-off, a pause). Between two messages the caches are evicted
(a memory copy of --evict MiB, optionally a --gap sleep), as the other processes on the
machine do to the daemon between two notes; --evict 0 --gap 0 gives the warm numbers.

Two handlers take turns in one run, one message each in alternation:
  identity   `lambda message, now: (message,)`: the floor of the callback itself
  engine     Engine.handle on the latency bench's chart and bank
and the engine's p50/p99 are printed as ratios against the identity's.

    python3 -m bench.handling [--notes 2000] [--evict 16] [--gap 0] [--gc default|freeze]
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from bench.latency import bench_bank  # noqa: E402
from melodyflowd.live.engine import Engine  # noqa: E402
from melodyflowd.live.ports import Timing, _make_callback  # noqa: E402
from melodyflowd.live.transport import Transport  # noqa: E402
from melodyflowd.music.chart import parse_chart  # noqa: E402
from melodyflowd.music.phrases import load_bank  # noqa: E402
from melodyflowd.service.config import EngineSettings  # noqa: E402
from tests.support.jack import bench_chart  # noqa: E402


def make_engine(settings: EngineSettings | None = None) -> Engine:
    chart = parse_chart(bench_chart("handling bench"), "<bench>")
    with tempfile.TemporaryDirectory(prefix="mfd-handling-") as tmp:
        bank = load_bank(bench_bank(Path(tmp) / "bank.json"))
    return Engine(settings or EngineSettings(), chart, bank,
                  Transport(chart.tempo, chart.beats_per_bar))


def summary(ns: list[int]) -> dict[str, float]:
    data = sorted(ns)

    def pick(q: float) -> float:
        return data[min(len(data) - 1, int(q * len(data)))] / 1000.0

    return {"n": len(data), "p50": pick(0.5), "p90": pick(0.9), "p99": pick(0.99),
            "max": data[-1] / 1000.0}


def run(notes: int, evict_mib: float, gap: float, seed: int,
        subjects: dict[str, Callable[[list[int], float], Any]]) -> dict[str, dict]:
    """The handlers through ports.py's callback, in turns; handling times (us) of each:
    "all" messages, "on" (note-ons) and "off" (note-offs)."""
    sink: deque = deque(maxlen=64)               # a C-level send, like rtmidi's
    timings = {name: Timing() for name in subjects}
    callbacks = {name: _make_callback(handler, sink.append, timings[name])
                 for name, handler in subjects.items()}
    size = int(evict_mib * (1 << 20))
    src = bytearray(size)
    dst = bytearray(size)
    samples: dict[str, dict[str, list[int]]] = {name: {"on": [], "off": []}
                                                 for name in subjects}
    rng = random.Random(seed)
    names = list(subjects)

    def cold() -> None:
        if size:
            dst[:] = src
        if gap:
            time.sleep(gap * (0.5 + rng.random()))

    for i in range(notes):
        key, velocity = 48 + rng.randrange(36), 40 + rng.randrange(80)
        order = names if i % 2 == 0 else names[::-1]
        for kind, message in (("on", [0x90, key, velocity]), ("off", [0x80, key, 0])):
            for name in order:
                cold()
                timing = timings[name]
                before = timing.count[0]
                callbacks[name](([*message], 0.0), None)
                samples[name][kind].append(timing.ring[before & (len(timing.ring) - 1)])
    return {name: {"all": summary(s["on"] + s["off"]), "on": summary(s["on"]),
                   "off": summary(s["off"])} for name, s in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--evict", type=float, default=16.0,
                        help="MiB copied between two messages (0: warm caches)")
    parser.add_argument("--gap", type=float, default=0.005,
                        help="mean seconds slept between two messages")
    parser.add_argument("--gc", choices=("default", "freeze", "off"), default="freeze",
                        help="freeze: gc.freeze() after start-up, as the daemon does")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the numbers to this file")
    args = parser.parse_args()
    engine = make_engine()
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    subjects = {"identity": lambda message, now: (message,), "engine": engine.handle}
    result = run(args.notes, args.evict, args.gap, args.seed, subjects)
    if engine.errors:
        raise RuntimeError(f"the engine swallowed {engine.errors} errors")
    print(f"handling bench: {args.notes} notes (note-on + note-off) per handler, "
          f"{args.evict:g} MiB evicted and {args.gap * 1000:g} ms slept between messages, "
          f"gc {args.gc}")
    print(f"{'handler':10}{'messages':>9}{'n':>6}{'p50 us':>9}{'p90 us':>9}{'p99 us':>9}"
          f"{'max us':>9}")
    for name, kinds in result.items():
        for kind, s in kinds.items():
            print(f"{name:10}{kind:>9}{s['n']:>6}{s['p50']:>9.2f}{s['p90']:>9.2f}"
                  f"{s['p99']:>9.2f}{s['max']:>9.2f}")
    ident, eng = result["identity"]["all"], result["engine"]["all"]
    print(f"ratio engine/identity: p50 {eng['p50'] / ident['p50']:.2f}  "
          f"p99 {eng['p99'] / ident['p99']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "result": result},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
