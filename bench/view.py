"""What an open live view costs the MIDI callback: the daemon's handling time with and
without a page open, in one run, on one private JACK server.

Phases, taking turns (--runs times each):
  no view      melodyflowd --phrases bank (the latency bench's chart and bank)
  events only  the same with --view 0 and a thread of this bench reading the page's event
               stream: the daemon's own cost of a page (watcher, server thread, pushes)
  page open    the same with Debian's chromium (headless) showing the page, which the
               daemon updates every beat as the song moves: the browser's CPU as well
The player plays --notes notes (note-on, a pause, note-off, a pause) as bench/latency.py
does; the first note starts the internal clock (--clock: MIDI clock from the player
too). The handling time is the daemon's own (perf_counter_ns around engine.handle in its
callback, from its final stats line: the last 4096 messages); the end-to-end latency is
the player's (note-on sent -> mapped note-on back). Prints the phases and their ratios
against no view.

    python3 -m bench.view [--notes 1500] [--runs 2] [--clock] [--json FILE]
                          [--screenshot docs/img/live-view.png]

--screenshot: afterwards, the embedded model on examples/blues.yaml under MIDI clock at
the chart's tempo, a few keys played, and the page saved as a PNG.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from bench.latency import CHART, Daemon, answering, bench_bank, measure, percentiles  # noqa: E402
from tests.support.browser import browser_missing, headless_chromium  # noqa: E402
from tests.support.jack import ClockSender, JackServer, MidiPeer  # noqa: E402
from tests.support.jack_registry import reclaim_stale_servers  # noqa: E402

PHASES = ("no view", "events only", "page open")


def view_url(daemon: Daemon, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in daemon.lines:
            found = re.search(r"live view: (http://\S+)", line)
            if found:
                return found.group(1)
        time.sleep(0.05)
    raise RuntimeError("no live view address:\n" + "\n".join(daemon.lines[-20:]))


class EventsReader:
    """A page without a browser: a thread that reads the view's event stream."""

    def __init__(self, url: str) -> None:
        import urllib.request

        self.events = 0
        self._stream = urllib.request.urlopen(url.split("?")[0] + "events", timeout=30)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._stream:
                if line.startswith(b"event:"):
                    self.events += 1
        except (OSError, ValueError, AttributeError):   # closed under it by close()
            pass

    def close(self) -> None:
        self._stream.close()


def one_phase(rtmidi, server: JackServer, work: Path, chart: Path, bank: Path, phase: str,
              args, seed: int, run: int) -> dict:
    view = phase != "no view"
    tag = f"{phase.split()[0]}{run}"
    extra = ["--view", "0"] if view else []
    daemon = Daemon(server, work, ["--chart", str(chart), "--phrases", str(bank), *extra], tag)
    driver = clock = peer = reader = None
    try:
        daemon.wait("ready:", 60)
        server.wait_for_ports([daemon.in_name, daemon.out_name])
        if not answering(rtmidi, (daemon.in_name, daemon.out_name)):
            raise RuntimeError(f"melodyflowd ({daemon.in_name!r}) does not answer notes")
        if phase == "events only":
            reader = EventsReader(view_url(daemon))
        if phase == "page open":
            profile = work / f"profile-{tag}"
            driver = headless_chromium(profile)
            driver.get(view_url(daemon))
            deadline = time.monotonic() + 15
            while driver.execute_script("return document.querySelectorAll('.bar').length") \
                    == 0:
                if time.monotonic() > deadline:
                    raise RuntimeError("the page shows no chart")
                time.sleep(0.1)
        if args.clock:
            peer = MidiPeer(to_port=daemon.in_name, name=f"bench clock {tag}")
            clock = ClockSender(peer, 120).start()
        latencies = measure(rtmidi, {"melodyflowd": (daemon.in_name, daemon.out_name)},
                            args.notes, seed)["melodyflowd"]
        pushed = None
        if driver is not None:
            pushed = driver.execute_script("return state && state.played_count")
    finally:
        if clock is not None:
            clock.stop()
        if peer is not None:
            peer.close()
        if driver is not None:
            driver.quit()
        if reader is not None:
            reader.close()
            pushed = reader.events
        handling = daemon.stop()
    return {"handling_us": handling,
            "latency_ms": percentiles([x * 1000 for x in latencies]),
            "page_saw_notes": pushed}


def screenshot(rtmidi, server: JackServer, work: Path, path: Path) -> None:
    chart = ROOT / "examples" / "blues.yaml"
    config = work / "shot.yaml"
    config.write_text(f"generation:\n  cache_dir: {work / 'cache'}\n")
    daemon = Daemon(server, work, ["--chart", str(chart), "--seed", "7", "--config",
                                   str(config), "--view", "0"], "shot")
    driver = None
    try:
        daemon.wait("ready:", 300)
        server.wait_for_ports([daemon.in_name, daemon.out_name])
        driver = headless_chromium(work / "profile-shot")
        driver.set_window_size(1200, 900)
        driver.get(view_url(daemon))
        peer = MidiPeer(to_port=daemon.in_name, from_port=daemon.out_name, name="bench shot")
        clock = ClockSender(peer, 160).start()
        try:
            # Into the 6th bar (Bo7), eighth notes with a rest here and there.
            for step in range(2 * 4 * 5 + 3):
                clock.wait_until_beat(step / 2)
                if step % 7 != 6:
                    peer.send([0x90, 64, 90])
                    clock.wait_until_beat(step / 2 + 0.3)
                    peer.send([0x80, 64, 0])
            clock.wait_until_beat(5 * 4 + 1.9)
            time.sleep(0.05)
            path.parent.mkdir(parents=True, exist_ok=True)
            driver.save_screenshot(str(path))
        finally:
            clock.stop(send_stop=True)
            peer.close()
    finally:
        if driver is not None:
            driver.quit()
        daemon.stop()
    print(f"wrote {path}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=1500,
                        help="notes a phase (2 messages each; the stats ring holds 4096)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--clock", action="store_true", help="the player sends MIDI clock too")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--screenshot", help="save the page of a blues under way as this PNG")
    args = parser.parse_args()
    missing = browser_missing()
    if missing:
        print(f"bench.view: {missing}", file=sys.stderr)
        return 2
    import rtmidi

    results: dict[str, list[dict]] = {phase: [] for phase in PHASES}
    reclaim_stale_servers()          # killed servers' slots: jack2 keeps only 8
    with tempfile.TemporaryDirectory(prefix="mfd-view-bench-") as tmp, JackServer() as server:
        work = Path(tmp)
        chart = work / "chart.yaml"
        chart.write_text(CHART)
        bank = bench_bank(work / "bank.json")
        for run in range(args.runs):
            for phase in PHASES:
                result = one_phase(rtmidi, server, work, chart, bank, phase, args,
                                   args.seed + run, run)
                results[phase].append(result)
                h, lat = result["handling_us"], result["latency_ms"]
                print(f"run {run + 1} {phase:10} handling us: p50 {h['p50']:6.1f} p99 "
                      f"{h['p99']:6.1f} max {h['max']:7.1f} (n={h['n']:.0f}); latency ms: "
                      f"p50 {lat['p50']:.3f} p99 {lat['p99']:.3f}"
                      + (f"; the page saw {result['page_saw_notes']} notes"
                         if phase == "page open" else
                         f"; {result['page_saw_notes']} events read"
                         if phase == "events only" else ""), flush=True)
        if args.screenshot:
            screenshot(rtmidi, server, work, Path(args.screenshot))
        for leftover in work.glob("profile-*"):
            shutil.rmtree(leftover, ignore_errors=True)

    if not args.runs:
        return 0

    def mean(phase: str, group: str, key: str) -> float:
        values = [r[group][key] for r in results[phase]]
        return sum(values) / len(values)

    print(f"\nlive view bench: {args.notes} notes a phase, {args.runs} runs, "
          f"{'MIDI clock' if args.clock else 'internal clock'}")
    print(f"{'(means of runs)':14}{'handling p50 us':>16}{'p99 us':>10}{'max us':>10}"
          f"{'latency p50 ms':>16}{'p99 ms':>10}")
    for phase in results:
        print(f"{phase:14}{mean(phase, 'handling_us', 'p50'):>16.1f}"
              f"{mean(phase, 'handling_us', 'p99'):>10.1f}"
              f"{mean(phase, 'handling_us', 'max'):>10.1f}"
              f"{mean(phase, 'latency_ms', 'p50'):>16.3f}{mean(phase, 'latency_ms', 'p99'):>10.3f}")
    ratios = {f"{phase} / no view: {group} {key}":
              mean(phase, group, key) / mean("no view", group, key)
              for phase in PHASES[1:] for group in ("handling_us", "latency_ms")
              for key in ("p50", "p99", "max")}
    for phase in PHASES[1:]:
        print(f"ratio {phase} / no view: " + ", ".join(
            f"{k.split(': ')[1]} {v:.2f}" for k, v in ratios.items() if k.startswith(phase)))
    for phase in PHASES:
        p99 = max(r["handling_us"]["p99"] for r in results[phase])
        print(f"handling p99, {phase} (worst run): {p99:.1f} us (target <= 50 us: "
              f"{'met' if p99 <= 50 else 'NOT met'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results,
                                               "ratios": ratios}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
