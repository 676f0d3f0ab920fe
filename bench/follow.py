"""Follow mode's phrase bank: how long until it plays, and what it costs in memory.

The bank holds lines for every chord-scale in all 12 roots (music/follow.py: a synthetic
chart of 216 one-chord bars, written by the model with the chart constraint). Measured the
way the daemon gets a bank, each in a fresh process (python start, imports, the
generator child spawned, the model loaded, the bank written or read from the cache):

  cold      - empty cache: from process start until the first scales' bank is in and the
              follow tables (recognizer table, join tables) are built: it plays from here
              (the daemon's order: music.follow.follow_charts); and until the other
              scales' bank is in too;
  all at once - cold, every scale in one chart before it plays (how it was done before);
  cached    - the same again, the bank from the cache;
  baseline  - cold start of a chart bank as the daemon makes it today (examples/blues.yaml,
              12 bars), in the same run of this script: the ratio cold / baseline says what
              follow mode adds to a start;
  memory    - in the daemon's process: the bank and the follow tables as tracemalloc counts
              them, and the process's RSS before the request and once they are built; the
              generator child's peak RSS (it exits after start-up is measured, and holds the
              model, not the tables).

    python3 -m bench.follow [--variations 4] [--json bench/results/follow.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

START = r"""
import json, os, resource, sys, time, tracemalloc
from melodyflowd.service.config import load_settings
from melodyflowd.music.chart import load_chart
from melodyflowd.music.follow import follow_chart, follow_charts
from melodyflowd.live.follow import build_follow
from melodyflowd.generate.worker import BankReady, Failed, GeneratorClient

def rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0

which, cache_dir, variations = sys.argv[1], sys.argv[2], int(sys.argv[3])
settings = load_settings(None, {"generation.cache_dir": cache_dir,
                                "generation.variations": variations})
if which == "follow":            # as the daemon does: the first scales, then the rest
    charts = list(follow_charts())
elif which == "whole":           # every scale in one chart
    charts = [follow_chart()]
else:
    charts = [load_chart(which)]
client = GeneratorClient(settings)
client.start()
before = rss_mb()

def bank_for(chart):
    client.request_chart(chart, settings.generation)
    while True:
        events = [e for e in client.poll() if isinstance(e, (BankReady, Failed))]
        if events:
            break
        time.sleep(0.02)
    if not isinstance(events[0], BankReady):
        print("FAILED", events[0].message, flush=True)
        sys.exit(1)
    return events[0].bank, events[0].from_cache

follow = which in ("follow", "whole")
bank, from_cache = bank_for(charts[0])
tables = build_follow(bank, charts[0], floor=60) if follow else None
ready = time.monotonic()        # CLOCK_MONOTONIC: the same clock as the parent's
more = [(bank_for(c)[0], c) for c in charts[1:]]
if more:
    tables = build_follow(bank, charts[0], more=more, floor=60)
complete = time.monotonic()
after = rss_mb()

def spread(program):
    # where the lines sit: 5th, 50th, 95th percentile of every line note
    notes = sorted(p for cl in {id(c): c for c in program.lines}.values()
                   for line in cl.lines for p in line)
    return [notes[len(notes) * q // 100] for q in (5, 50, 95)]

register = {}
if follow:
    register = {"lines_p5_p50_p95": spread(build_follow(bank, charts[0], more=more)),
                "above_split_p5_p50_p95": spread(tables)}
# the same again under tracemalloc (not timed: it slows allocation down), the recognizer's
# table included (build_follow keeps one a key)
from melodyflowd.live import follow as follow_tables
follow_tables._recognition_table.cache_clear()
tracemalloc.start()
from melodyflowd.music.phrases import bank_from_json, bank_to_json
copies = [(bank_from_json(bank_to_json(b)), c) for b, c in [(bank, charts[0])] + more]
bank_bytes = tracemalloc.get_traced_memory()[0]
copy_tables = build_follow(copies[0][0], copies[0][1], more=copies[1:], floor=60) \
    if follow else None
total_bytes = tracemalloc.get_traced_memory()[0]
tracemalloc.stop()
print("READY " + json.dumps({
    "ready_at": ready, "complete_at": complete, "load": os.getloadavg()[0],
    "from_cache": from_cache, "bank_mb": bank_bytes / 2**20,
    "bank_and_tables_mb": total_bytes / 2**20, "rss_before_mb": before,
    "rss_after_mb": after,
    "lines": sum(len(c.lines) for c in {id(c): c for c in tables.lines}.values())
             if tables else 0,
    "chord_scales": len({c.scale_key for c in tables.lines}) if tables else 0,
    **register}),
      flush=True)
client.stop()
print("CHILD " + json.dumps({
    "child_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}),
      flush=True)
"""


def start(which: str, cache_dir: str, variations: int) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("HF_HUB_OFFLINE", "1")
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-c", START, which, cache_dir, str(variations)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=ROOT)
    result: dict = {}
    for line in proc.stdout:
        if line.startswith("READY "):
            result.update(json.loads(line[6:]))
            result["seconds"] = result.pop("ready_at") - started
            result["complete_seconds"] = result.pop("complete_at") - started
        elif line.startswith("CHILD "):
            result.update(json.loads(line[6:]))
        elif line.startswith("FAILED"):
            break
    _, stderr = proc.communicate(timeout=300)
    if "seconds" not in result:
        raise RuntimeError(f"no bank for {which}: {stderr[-2000:]}")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variations", type=int, default=4)
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as follow_cache, \
            tempfile.TemporaryDirectory() as chart_cache:
        load = os.getloadavg()[0]
        cold = start("follow", follow_cache, args.variations)
        cached = start("follow", follow_cache, args.variations)
        baseline = start(str(ROOT / "examples" / "blues.yaml"), chart_cache, args.variations)
    with tempfile.TemporaryDirectory() as whole_cache:
        whole = start("whole", whole_cache, args.variations)
    print(f"follow bank, {args.variations} variations, 216 chord-scales x lines "
          f"(load average {load:.1f} at the start, {cold['load']:.1f} when it played):")
    print(f"  cold start   {cold['seconds']:6.1f} s  playable (the first scales; target "
          f"<= 30 s; from cache: {cold['from_cache']}); every scale at "
          f"{cold['complete_seconds']:.1f} s")
    print(f"  all at once  {whole['seconds']:6.1f} s  cold, every scale in one chart before "
          f"playing; playable / all at once = {cold['seconds'] / whole['seconds']:.2f}x")
    print(f"  cached start {cached['seconds']:6.1f} s  (from cache: {cached['from_cache']})")
    print(f"  baseline     {baseline['seconds']:6.1f} s  cold start of a 12-bar chart's bank;"
          f" follow / baseline = {cold['seconds'] / baseline['seconds']:.2f}x")
    print(f"  memory       bank {cold['bank_mb']:.1f} MB, bank + follow tables "
          f"{cold['bank_and_tables_mb']:.1f} MB (target <= 100 MB); daemon RSS "
          f"{cold['rss_before_mb']:.0f} -> {cold['rss_after_mb']:.0f} MB; generator child "
          f"peak RSS {cold['child_peak_rss_mb']:.0f} MB")
    print(f"  lines        {cold['lines']} over {cold['chord_scales']} chord-scales")
    print(f"  register     line notes p5/p50/p95 {cold['lines_p5_p50_p95']} as written, "
          f"{cold['above_split_p5_p50_p95']} above the split (60)")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"variations": args.variations, "load": load, "cold": cold, "cached": cached,
             "baseline": baseline, "all_at_once": whole}, indent=2) + "\n")


if __name__ == "__main__":
    main()
