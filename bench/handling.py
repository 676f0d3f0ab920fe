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

--follow: the engine in follow mode (no chart; the follow tables of a bank over every
chord-scale), and the play has a left hand: a four-note chord of a ii-V-I goes down below
the split (each key recognized in the callback), the right hand plays four notes over it,
the chord comes up; "chord" rows are the left hand's messages.

    python3 -m bench.handling [--notes 2000] [--evict 16] [--gap 0] [--gc default|freeze]
                              [--follow]
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
from melodyflowd.settings import EngineSettings  # noqa: E402
from tests.support.jack import bench_chart  # noqa: E402


def make_follow_engine() -> Engine:
    from melodyflowd.live.follow import build_follow
    from tests.support.follow_bank import make_follow_bank

    bank, chart = make_follow_bank()
    engine = Engine(EngineSettings(follow=True), chart, bank,
                    Transport(chart.tempo, chart.beats_per_bar))
    engine.offer_follow(build_follow(bank, chart))
    return engine


# Left-hand voicings of ii-V-I in C, F and Bb (3-7-9 / 7-3-13 rootless and rooted).
VOICINGS = [[38, 53, 57, 48], [53, 57, 59, 52], [52, 55, 59, 50],       # Dm7 G13 Cmaj9
            [43, 46, 50, 53], [46, 50, 52, 57], [45, 48, 52, 55],       # Gm7 C13 Fmaj9
            [36, 51, 55, 46], [51, 55, 57, 50], [50, 53, 57, 48]]       # Cm7 F13 Bbmaj9


def follow_messages(rng: random.Random, chords: int) -> list[tuple[str, list[int]]]:
    """(kind, message): a chord down, four right-hand notes, the chord up; `chords` times."""
    out: list[tuple[str, list[int]]] = []
    for i in range(chords):
        voicing = VOICINGS[i % len(VOICINGS)]
        out += [("chord", [0x90, n, 70]) for n in voicing]
        for _ in range(4):
            key, velocity = 60 + rng.randrange(24), 40 + rng.randrange(80)
            out += [("on", [0x90, key, velocity]), ("off", [0x80, key, 0])]
        out += [("chord", [0x80, n, 0]) for n in voicing]
    return out


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
        subjects: dict[str, Callable[[list[int], float], Any]],
        follow: bool = False) -> dict[str, dict]:
    """The handlers through ports.py's callback, in turns; handling times (us) of each:
    "all" messages, "on" (note-ons) and "off" (note-offs)."""
    sink: deque = deque(maxlen=64)               # a C-level send, like rtmidi's
    timings = {name: Timing() for name in subjects}
    callbacks = {name: _make_callback(handler, sink.append, timings[name])
                 for name, handler in subjects.items()}
    size = int(evict_mib * (1 << 20))
    src = bytearray(size)
    dst = bytearray(size)
    samples: dict[str, dict[str, list[int]]] = {name: {"on": [], "off": [], "chord": []}
                                                 for name in subjects}
    rng = random.Random(seed)
    names = list(subjects)

    def cold() -> None:
        if size:
            dst[:] = src
        if gap:
            time.sleep(gap * (0.5 + rng.random()))

    def plain() -> list[tuple[str, list[int]]]:
        out = []
        for _ in range(notes):
            key, velocity = 48 + rng.randrange(36), 40 + rng.randrange(80)
            out += [("on", [0x90, key, velocity]), ("off", [0x80, key, 0])]
        return out

    stream = follow_messages(rng, notes // 4) if follow else plain()
    for i, (kind, message) in enumerate(stream):
        order = names if (i // 2) % 2 == 0 else names[::-1]     # turns: a note-on + off
        for name in order:
            cold()
            timing = timings[name]
            before = timing.count[0]
            callbacks[name](([*message], 0.0), None)
            samples[name][kind].append(timing.ring[before & (len(timing.ring) - 1)])
    return {name: {"all": summary(s["on"] + s["off"] + s["chord"]),
                   **{kind: summary(ns) for kind, ns in s.items() if ns}}
            for name, s in samples.items()}


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
    parser.add_argument("--follow", action="store_true",
                        help="follow mode, with a left hand playing chords")
    args = parser.parse_args()
    engine = make_follow_engine() if args.follow else make_engine()
    if args.gc == "freeze":
        gc.collect()
        gc.freeze()
    elif args.gc == "off":
        gc.disable()
    subjects = {"identity": lambda message, now: (message,), "engine": engine.handle}
    result = run(args.notes, args.evict, args.gap, args.seed, subjects, args.follow)
    if engine.errors:
        raise RuntimeError(f"the engine swallowed {engine.errors} errors")
    if args.follow:
        print(f"follow mode: {engine._follower.changes} chord changes recognized, "
              f"last chord {engine.follow_chord.symbol}")
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
