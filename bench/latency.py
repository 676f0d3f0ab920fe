"""End-to-end MIDI latency of melodyflowd against a plain echo client, through JACK.

One run, one private JACK server (dummy driver, 48 kHz, 256-frame periods), two
subjects side by side on it:
  - melodyflowd (a subprocess, `--backend jack`), and
  - a plain python-rtmidi echo client (a subprocess: its callback sends back what came).
A player client in this process sends each note-on to both at the same moment, and
takes the time from send to the mapped note-on coming back (time.perf_counter, one
clock). Then the note-offs, a random pause, the next note, >= 2000 notes.

Phase "idle": the daemon plays a bank. Phase "regenerating": the same while the
generator child is kept busy writing new banks (SIGUSR1 again as soon as one is done).
The daemon's own handling time (perf_counter_ns around engine.handle inside its
callback) comes from its final stats line. Prints p50/p99/max and the ratios against
the echo client in the same phase, with the targets (the melodyflowd/echo p99 ratio,
handling p99 <= 50 us).

    python3 -m bench.latency [--notes 2000] [--model DIR] [--skip-regen] [--realtime]
                             [--runs N] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

from tests.support.jack import (  # noqa: E402
    ECHO_CLIENT,
    JackServer,
    bench_chart,
    die_with_parent,
    write_bank,
)

CHART = bench_chart("latency bench")

# The shell without the engine: ports.py's callback (timing ring and all) with a handler
# that returns the message. Its handling times are the floor the engine's sit on.
SHELL_ECHO = """
import json, signal, sys, time
from melodyflowd.settings import PortSettings
from melodyflowd.live.ports import open_ports
ports = open_ports(PortSettings(backend="jack", in_name=sys.argv[1], out_name=sys.argv[2]),
                   lambda message, now: (message,))
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
while not stop:
    time.sleep(0.05)
print(json.dumps(ports.timing.percentiles()), flush=True)
ports.close()
"""


def percentiles(values: list[float]) -> dict[str, float]:
    data = sorted(values)
    if not data:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}

    def pick(q: float) -> float:
        return data[min(len(data) - 1, int(q * len(data)))]

    return {"n": len(data), "p50": pick(0.5), "p99": pick(0.99), "max": data[-1]}


class Receiver:
    """An input connected to one subject's output; note-on arrival times, in order."""

    def __init__(self, rtmidi, port: str, name: str) -> None:
        self.arrivals: list[float] = []
        self.event = threading.Event()
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name)
        self.inp.open_port(_index(self.inp.get_ports(), port))
        self.inp.set_callback(self._on)

    def _on(self, event, _data) -> None:
        now = time.perf_counter()
        message = event[0]
        if len(message) == 3 and message[0] & 0xF0 == 0x90 and message[2] > 0:
            self.arrivals.append(now)
            self.event.set()

    def close(self) -> None:
        self.inp.cancel_callback()
        self.inp.close_port()
        self.inp.delete()


def _index(ports: list[str], name: str) -> int:
    for i, port in enumerate(ports):
        if name in port:
            return i
    raise LookupError(f"{name!r} not in {ports}")


def measure(rtmidi, subjects: dict[str, tuple[str, str]], notes: int, seed: int,
            during=None, quiet: bool = False) -> dict[str, list[float]]:
    """Send `notes` note-ons to every subject at once; latency (s) of each answer."""
    rng = random.Random(seed)
    outs, recvs = {}, {}
    for name, (in_port, out_port) in subjects.items():
        out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, f"bench to {name}")
        out.open_port(_index(out.get_ports(), in_port))
        outs[name] = out
        recvs[name] = Receiver(rtmidi, out_port, f"bench from {name}")
    latencies: dict[str, list[float]] = {name: [] for name in subjects}
    lost = dict.fromkeys(subjects, 0)
    try:
        names = list(subjects)
        for i in range(notes):
            if during is not None:
                during(i)
            key, velocity = 48 + rng.randrange(36), 40 + rng.randrange(80)
            before = {name: len(recvs[name].arrivals) for name in names}
            order = names if i % 2 == 0 else names[::-1]   # neither always sends first
            sent = {}
            for name in order:
                sent[name] = time.perf_counter()
                outs[name].send_message([0x90, key, velocity])
            deadline = time.perf_counter() + 0.5
            for name in names:                 # block (no polling: the CPU is the daemon's)
                while len(recvs[name].arrivals) <= before[name]:
                    left = deadline - time.perf_counter()
                    if left <= 0 or not recvs[name].event.wait(left):
                        break
                    recvs[name].event.clear()
            for name in names:
                arrivals = recvs[name].arrivals
                if len(arrivals) > before[name]:
                    latencies[name].append(arrivals[before[name]] - sent[name])
                else:
                    lost[name] += 1
            time.sleep(0.002 + rng.random() * 0.004)
            for name in order:
                outs[name].send_message([0x80, key, 0])
            time.sleep(0.002 + rng.random() * 0.008)       # a random phase to the period
    finally:
        for name in subjects:
            recvs[name].close()
            outs[name].close_port()
            outs[name].delete()
    for name, count in lost.items():
        if count and not quiet:
            print(f"  {count} of {notes} notes sent to {name} never came back (JACK drops the "
                  "events of a cycle that a client misses)", file=sys.stderr)
    return latencies


def answering(rtmidi, ports: tuple[str, str]) -> bool:
    """A subject answers at least 6 of 8 notes (a JACK client can get stuck in its first
    cycle on an overloaded machine: jackd then logs 'was not finished' for it forever)."""
    lat = measure(rtmidi, {"check": ports}, 8, 0, quiet=True)
    return len(lat["check"]) >= 6


class Echo:
    """The baseline: a plain python-rtmidi client whose callback sends back what came."""

    script = ECHO_CLIENT
    prefix = "echo"

    def __init__(self, server: JackServer) -> None:
        self.server = server
        self.proc: subprocess.Popen | None = None
        self.ports = ("", "")
        self.output = ""

    def start(self, rtmidi, tries: int = 3) -> None:
        for attempt in range(1, tries + 1):
            self.ports = (f"{self.prefix}{attempt} in", f"{self.prefix}{attempt} out")
            self.proc = subprocess.Popen([sys.executable, "-c", self.script, *self.ports],
                                         env=self.server.env, preexec_fn=die_with_parent,
                                         stdout=subprocess.PIPE, text=True)
            self.server.wait_for_ports(self.ports, proc=self.proc)
            if answering(rtmidi, self.ports):
                return
            print(f"  echo client {attempt} does not answer; starting another", file=sys.stderr)
            self.stop()
        raise RuntimeError("no echo client answered")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.output, _ = self.proc.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.output, _ = self.proc.communicate()
            self.proc = None


class ShellEcho(Echo):
    """ports.py's callback with an identity handler: the shell's cost without the engine."""

    script = SHELL_ECHO
    prefix = "shell"

    def handling(self) -> dict[str, float]:
        """Stop it; the handling times (us) its timing ring held."""
        self.stop()
        for line in reversed(self.output.splitlines()):
            if line.startswith("{"):
                return json.loads(line)
        raise RuntimeError(f"shell echo printed no timing: {self.output!r}")


class Daemon:
    def __init__(self, server: JackServer, workdir: Path, args: list[str], tag: str) -> None:
        self.in_name, self.out_name = f"mfd {tag} in", f"mfd {tag} out"
        self.lines: list[str] = []
        cmd = [sys.executable, "-c",
               "from melodyflowd.cli import daemon_main; daemon_main(prog_name='melodyflowd')",
               *args, "--backend", "jack", "--in-name", self.in_name,
               "--out-name", self.out_name]
        self.proc = subprocess.Popen(cmd, env=server.env, stderr=subprocess.PIPE, text=True,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     cwd=workdir, preexec_fn=die_with_parent)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def count(self, text: str) -> int:
        return sum(text in line for line in self.lines)

    def wait(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.count(text):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"melodyflowd: no {text!r}:\n" + "\n".join(self.lines[-30:]))

    def stop(self) -> dict[str, float]:
        """SIGTERM; the handling times (us) of its final stats line."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        self._thread.join(timeout=5)
        stats = [line for line in self.lines if "stats:" in line]
        if not stats:
            raise RuntimeError("no stats line:\n" + "\n".join(self.lines[-30:]))
        match = re.search(r"handling p50 ([\d.]+) us p99 ([\d.]+) us max ([\d.]+) us "
                          r"\(n=(\d+)\)", stats[-1])
        if not match:
            raise RuntimeError(f"cannot read {stats[-1]!r}")
        p50, p99, peak, n = (float(x) for x in match.groups())
        return {"p50": p50, "p99": p99, "max": peak, "n": n}


def report(phase: str, lat: dict[str, list[float]], handling: dict[str, float],
           target: float, floor: dict[str, float]) -> dict:
    echo = percentiles([x * 1000 for x in lat["echo"]])
    mfd = percentiles([x * 1000 for x in lat["melodyflowd"]])
    shell = percentiles([x * 1000 for x in lat["shell"]])
    print(f"\n== {phase} ==")
    print(f"{'':22}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'max ms':>10}")
    for name, p in (("echo client", echo), ("ports.py, no engine", shell),
                    ("melodyflowd", mfd)):
        print(f"{name:22}{p['n']:>6}{p['p50']:>10.3f}{p['p99']:>10.3f}{p['max']:>10.3f}")
    r50, r99 = mfd["p50"] / echo["p50"], mfd["p99"] / echo["p99"]
    print(f"ratio melodyflowd/echo: p50 {r50:.3f}  p99 {r99:.3f}  (target p99 <= {target:.2f}:"
          f" {'met' if r99 <= target else 'NOT met'})")
    print(f"engine handling time in the callback (handle()), us: p50 {handling['p50']:.1f} "
          f"p99 {handling['p99']:.1f} max {handling['max']:.1f} over {handling['n']:.0f} "
          f"messages (target p99 <= 50 us: {'met' if handling['p99'] <= 50 else 'NOT met'})")
    print(f"  the same callback with an identity handler instead of the engine, us: p50 "
          f"{floor['p50']:.1f} p99 {floor['p99']:.1f} max {floor['max']:.1f} "
          f"over {floor['n']:.0f} messages")
    return {"echo_ms": echo, "melodyflowd_ms": mfd, "ratio_p50": r50, "ratio_p99": r99,
            "shell_ms": shell, "handling_us": handling, "shell_handling_us": floor,
            # every latency, for the histograms of bench/report.py
            "samples_ms": {name: [round(x * 1000, 4) for x in values]
                           for name, values in lat.items()}}


def subjects_ready(rtmidi, server: JackServer, daemon: Daemon, echo: Echo,
                   ready_timeout: float) -> tuple[ShellEcho, dict[str, tuple[str, str]]]:
    """Wait until the daemon answers notes, start the identity-handler shell beside it;
    the three subjects' (in, out) port names, as `measure` takes them."""
    daemon.wait("ready:", ready_timeout)
    server.wait_for_ports([daemon.in_name, daemon.out_name])
    if not answering(rtmidi, (daemon.in_name, daemon.out_name)):
        raise RuntimeError(f"melodyflowd ({daemon.in_name!r}) does not answer notes")
    shell = ShellEcho(server)
    shell.start(rtmidi)
    return shell, {"echo": echo.ports, "shell": shell.ports,
                   "melodyflowd": (daemon.in_name, daemon.out_name)}


def one_run(rtmidi, args, seed: int) -> dict:
    """Both phases on a fresh JACK server: {"idle": ..., "regenerating": ...}."""
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="mfd-bench-") as tmp, \
            JackServer(realtime=args.realtime) as server:
        work = Path(tmp)
        chart = work / "chart.yaml"
        chart.write_text(CHART)
        bank = bench_bank(work / "bank.json")
        echo = Echo(server)
        try:
            echo.start(rtmidi)
            daemon = Daemon(server, work, ["--chart", str(chart), "--phrases", str(bank),
                                           "--log-level", "info"], "idle")
            shell, subjects = subjects_ready(rtmidi, server, daemon, echo, 60)
            lat = measure(rtmidi, subjects, args.notes, seed)
            handling = daemon.stop()
            results["idle"] = report("idle (playing a bank)", lat, handling, 1.05,
                                     shell.handling())
            if not args.skip_regen:
                results["regenerating"] = regen_phase(rtmidi, server, work, chart, echo, args,
                                                      seed)
        finally:
            echo.stop()
    return results


SPREAD_KEYS = (("handling p50 us", lambda r: r["handling_us"]["p50"]),
               ("handling p99 us", lambda r: r["handling_us"]["p99"]),
               ("handling max us", lambda r: r["handling_us"]["max"]),
               ("identity handler p99 us", lambda r: r["shell_handling_us"]["p99"]),
               ("ratio p50", lambda r: r["ratio_p50"]),
               ("ratio p99", lambda r: r["ratio_p99"]))


def spread(runs: list[dict]) -> dict:
    """Per phase and number: every run's value, the median and the worst (the highest)."""
    out: dict = {}
    for phase in ("idle", "regenerating"):
        if not all(phase in run for run in runs):
            continue
        out[phase] = {}
        for name, get in SPREAD_KEYS:
            values = [get(run[phase]) for run in runs]
            ordered = sorted(values)
            out[phase][name] = {"runs": values, "median": ordered[(len(values) - 1) // 2],
                                "worst": ordered[-1]}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--notes", type=int, default=2000)
    parser.add_argument("--model", help="model dir for the regeneration phase "
                        "(default: the embedded model; a tiny random one if it is missing)")
    parser.add_argument("--skip-regen", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1,
                        help="repeat the whole bench (each on a new JACK server, seeds seed, "
                        "seed+1, ...); the JSON keeps the run with the median idle handling "
                        "p99 in full and every run's numbers under 'spread'")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--realtime", action="store_true",
                        help="run JACK with SCHED_FIFO process threads, as on a music machine "
                        "(default: --no-realtime, as in the tests)")
    args = parser.parse_args()
    import rtmidi

    results: dict = {"machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                 "python": platform.python_version(),
                                 "loadavg_start": os.getloadavg()},
                     "realtime": args.realtime,
                     "notes": args.notes}
    print(f"melodyflowd latency bench: {args.notes} notes a phase; "
          f"{platform.platform()}, {os.cpu_count()} cpus; JACK dummy 48 kHz / 256 frames, "
          f"{'realtime' if args.realtime else 'no-realtime'}; load average "
          f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    runs = []
    for k in range(args.runs):
        if args.runs > 1:
            print(f"\n##### run {k + 1} of {args.runs} (seed {args.seed + k}; load average "
                  f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})")
        runs.append(one_run(rtmidi, args, args.seed + k))
    by_p99 = sorted(range(len(runs)), key=lambda k: runs[k]["idle"]["handling_us"]["p99"])
    median_run = by_p99[(len(runs) - 1) // 2]
    results.update(runs[median_run])
    results["machine"]["loadavg_end"] = os.getloadavg()
    if args.runs > 1:
        results["median_run"] = median_run + 1
        results["spread"] = spread(runs)
        print(f"\n== spread over {args.runs} runs (median, worst; every run) ==")
        for phase, numbers in results["spread"].items():
            for name, v in numbers.items():
                print(f"{phase:13} {name:24} median {v['median']:9.3f}  worst "
                      f"{v['worst']:9.3f}   " + " ".join(f"{x:.3f}" for x in v["runs"]))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


def regen_phase(rtmidi, server: JackServer, work: Path, chart: Path, echo: Echo,
                args, seed: int) -> dict:
    model = args.model
    if model is None:
        default = ROOT / "melodyflowd" / "models" / "default"
        if (default / "model.safetensors").exists():
            model = str(default)
        else:
            from tests.support.tiny_model import build_tiny_model

            model = str(build_tiny_model(work / "tiny-model"))
            print(f"\n(no embedded model yet: the regeneration phase uses a tiny random model"
                  f" at {model})")
    config = work / "bench.yaml"
    config.write_text(f"generation:\n  cache_dir: {work / 'cache'}\n")
    daemon = Daemon(server, work, ["--chart", str(chart), "--model", model,
                                   "--config", str(config)], "regen")
    shell, subjects = subjects_ready(rtmidi, server, daemon, echo, 300)
    state = {"asked": 0, "busy_notes": 0}

    def keep_busy(_i: int) -> None:
        done = daemon.count("phrase bank ready") - 1       # minus the start-up bank
        if state["asked"] <= done:
            daemon.proc.send_signal(signal.SIGUSR1)
            state["asked"] += 1
        else:
            state["busy_notes"] += 1

    lat = measure(rtmidi, subjects, args.notes, seed + 1, during=keep_busy)
    handling = daemon.stop()
    generated = daemon.count("phrase bank ready") - 1
    result = report("while regenerating", lat, handling, 1.10, shell.handling())
    print(f"regenerations finished during the phase: {generated}; a generation was running "
          f"during {100 * state['busy_notes'] / max(1, args.notes):.0f}% of the notes")
    result["regenerations"] = generated
    return result


def bench_bank(path: Path) -> Path:
    """The chart's bars with eight notes each (two per beat), as a saved bank."""
    spans = [[("Dm7", 0, 2), ("G7", 2, 2)], [("Cmaj7", 0, 4)], [("Cm7", 0, 2), ("F7", 2, 2)],
             [("Bbmaj7", 0, 4)], [("Ebm7", 0, 2), ("Ab7", 2, 2)], [("Dbmaj7", 0, 4)],
             [("Dm7b5", 0, 2), ("G7", 2, 2)], [("Cm6", 0, 4)]]
    rng = random.Random(0)
    variations = []
    for _ in range(4):
        bars = []
        for bar in spans:
            notes = []
            for k in range(8):
                beat = k * 0.5
                symbol = next(s for s, b, n in bar if b <= beat < b + n)
                notes.append((60 + rng.randrange(24), beat, symbol))
            bars.append(notes)
        variations.append(bars)
    return write_bank(path, spans, variations, title="latency bench", tempo=120)


if __name__ == "__main__":
    sys.exit(main())
