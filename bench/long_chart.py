"""Long charts: memory and time of generation, and how soon the daemon plays.

Each size runs in a fresh process (so its peak RSS is its own): the embedded model is
loaded, its RSS noted (the baseline), then compose_bank writes 4 variations of a chart of
N bars (a 32-bar form, repeated). Printed a size: seconds, seconds to the first playable
part (compose's `partial` callback), peak RSS, and the growth over the baseline per 100
bars; the ratio line compares seconds per bar and MB per bar with the shortest chart.

With --daemon, the daemon itself on a private JACK server, per size: seconds from start
to READY=1 (ports open and a bank playing), and to the log line of the full bank.

    python3 -m bench.long_chart [--bars 32 250 1000] [--variations 4] [--daemon]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FORM = ["Bbmaj7 G7", "Cm7 F7", "Dm7 G7", "Cm7 F7", "Fm7 Bb7", "Ebmaj7 Ab7", "Dm7 G7",
        "Cm7 F7"] * 3 + ["D7", "D7", "G7", "G7", "C7", "C7", "F7", "F7"]


def chart_text(bars: int) -> str:
    chords = [FORM[i % len(FORM)] for i in range(bars)]
    return (f"title: long {bars}\ntempo: 160\ntime: 4/4\nchords: \"| "
            + " | ".join(chords) + ' |"\n')


CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from melodyflowd.generate import compose
from melodyflowd.generate.model import load_model
from melodyflowd.music.chart import parse_chart
from melodyflowd.settings import GenerationSettings

bars, variations = int(sys.argv[1]), int(sys.argv[2])
chart = parse_chart(sys.stdin.read(), "<bench>")
loaded = load_model(None)
loaded.fast_forward
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
first = []
started = time.perf_counter()
kwargs = {}
if "partial" in compose.compose.__code__.co_varnames:
    kwargs["partial"] = lambda bank: first or first.append(time.perf_counter() - started)
composed = compose.compose(chart, loaded, GenerationSettings(seed=1, variations=variations),
                           **kwargs)
bank = composed.bank
took = time.perf_counter() - started
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
notes = sum(len(p.notes) for row in bank.variations for p in row)
print(json.dumps({"bars": bars, "seconds": took, "first": first[0] if first else took,
                  "base_mb": base, "peak_mb": peak, "notes": notes,
                  "segments": composed.stats.segments, "runs": composed.stats.runs}))
"""


def run_compose(bars: int, variations: int) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(bars), str(variations)],
                          input=chart_text(bars), capture_output=True, text=True, cwd=ROOT,
                          timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"{bars} bars failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_daemon(bars: int, variations: int) -> dict:
    from tests.support.jack import DaemonProcess, JackServer

    server = JackServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="mfd-long-") as tmp:
            work = Path(tmp)
            chart = work / "long.yaml"
            chart.write_text(chart_text(bars))
            config = work / "config.yaml"
            config.write_text(f"generation:\n  cache_dir: {work / 'cache'}\n"
                              f"  variations: {variations}\n")
            started = time.monotonic()
            daemon = DaemonProcess(server, work, ["--chart", str(chart), "--config",
                                                  str(config), "--seed", "1"])
            try:
                daemon.wait_ready(timeout=3600)
                ready = time.monotonic() - started
                full = ready                      # a chart of one run: whole at once
                if any("the rest follows" in line for line in daemon.lines):
                    full = None
                    if daemon.wait_log("phrase bank complete", timeout=3600):
                        full = time.monotonic() - started
            finally:
                daemon.stop()
            return {"bars": bars, "ready": ready, "full": full}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bars", type=int, nargs="+", default=[32, 250, 1000])
    parser.add_argument("--variations", type=int, default=4)
    parser.add_argument("--daemon", action="store_true")
    args = parser.parse_args()
    if args.daemon:
        ready = []
        for bars in args.bars:
            got = run_daemon(bars, args.variations)
            ready.append(got["ready"])
            full = f"{got['full']:.1f} s" if got["full"] is not None else "n/a"
            print(f"daemon {bars:5d} bars: READY=1 (ports open, a bank playing) after "
                  f"{got['ready']:.1f} s; the whole bank after {full}", flush=True)
        if len(ready) > 1:
            print(f"ratio READY {args.bars[-1]} bars / {args.bars[0]} bars: "
                  f"x{ready[-1] / ready[0]:.2f}")
        return
    results = []
    for bars in args.bars:
        got = run_compose(bars, args.variations)
        results.append(got)
        growth = got["peak_mb"] - got["base_mb"]
        print(f"{bars:5d} bars: {got['seconds']:.1f} s (first part playable after "
              f"{got['first']:.1f} s), peak RSS {got['peak_mb']:.0f} MB (model loaded: "
              f"{got['base_mb']:.0f} MB; +{100 * growth / bars:.1f} MB per 100 bars), "
              f"{got['segments']} parts in {got.get('runs', 1)} runs, {got['notes']} notes",
              flush=True)
    if len(results) > 1:
        base, last = results[0], results[-1]
        per_bar = (last["seconds"] / last["bars"]) / (base["seconds"] / base["bars"])
        print(f"ratio {last['bars']} bars / {base['bars']} bars: seconds per bar x{per_bar:.2f}, "
              f"peak RSS x{last['peak_mb'] / base['peak_mb']:.2f} for "
              f"x{last['bars'] / base['bars']:.0f} the bars")


if __name__ == "__main__":
    main()
