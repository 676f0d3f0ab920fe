"""Soak: melodyflowd under a long, busy session, through JACK, beside an echo client.

One private JACK server (dummy driver), two subjects on it:
  - melodyflowd (a subprocess, `--backend jack`), generating with a model in its
    generator child (the embedded model, or --model DIR, or a tiny random one), and
  - a plain python-rtmidi echo client (the same one bench/latency.py uses).
A player in this process sends the same notes to both at the same moment:
  - a steady stream of `--rate` note-ons a second (default 50) over 16 channels, each key
    held 30-150 ms;
  - every `--burst-every` seconds (default 20) a burst of `--burst-seconds` (default 1)
    at `--burst-rate` notes a second (default 1000) over 16 channels, keys held 5-20 ms;
  - a regeneration every `--regen-every` seconds (default 10), alternately the
    regenerate control CC and SIGUSR1;
  - SIGHUP every `--hup-every` seconds (default 60).
Each note-on carries a tag (its channel and velocity, which melodyflowd keeps), so an
answer is matched with the note that asked for it, for the latency of both subjects.

Reported (printed, and with --json-out FILE as JSON for bench/report.py):
  - stuck notes: output note-ons of melodyflowd without their note-off once every key
    is up (must be 0), and note-offs for notes that were not sounding;
  - crashes: melodyflowd or its generator child dying, a non-zero exit status, engine or
    callback errors, tracebacks (must be 0);
  - resident memory (VmRSS) of melodyflowd and of its generator child, start and end;
  - per minute: end-to-end latency p50/p99 of melodyflowd and of the echo client, and
    the ratio; notes sent; banks swapped in; load average.
Timings depend on the machine and its load, which the report states; the test suite runs
a short soak (tests/service/test_soak.py) and asserts only the counts, never times.

    python3 -m bench.soak [--minutes 10] [--model DIR] [--json-out bench/results/soak.json]
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import heapq
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

from tests.support import jack as support_jack_module  # noqa: E402
from tests.support.jack import (  # noqa: E402
    ECHO_CLIENT,
    DaemonProcess,
    JackServer,
    MidiPeer,
    bench_chart,
    generator_child,
    note_balance,
)
from tests.support.jack_registry import reclaim_stale_servers  # noqa: E402

CHART = bench_chart("soak")
REGENERATE_CC = 20              # config/default.yaml: engine.controls.regenerate
TAGS = 16 * 127                 # (channel, velocity 1..127): a tag repeats every 2032 notes
MATCH_WINDOW = 1.0              # an answer later than this (s) is not matched to the note
LONG_NOTE = 1.0                 # an output note sounding longer than this (s) is reported


@dataclass
class SoakConfig:
    seconds: float = 600.0
    rate: float = 50.0
    burst_rate: float = 1000.0
    burst_seconds: float = 1.0
    burst_every: float = 20.0
    regen_every: float = 10.0
    hup_every: float = 60.0
    variations: int = 4
    model: str | None = None
    seed: int = 1
    realtime: bool = False      # JACK with SCHED_FIFO process threads (needs the rights)
    window: float = 60.0        # seconds per row of the per-window table ("each minute")


@contextlib.contextmanager
def start_jack(realtime: bool):
    """A private JackServer. With realtime threads, jackd is started without support_jack's
    PR_SET_PDEATHSIG pre-exec hook: with that hook, a realtime server leaves the Python
    callback of the echo client "not finished" in every cycle (seen here with jack2 1.9.21;
    the same server without the hook serves it). Stopped in a finally either way."""

    server = JackServer(realtime=realtime)
    hook = getattr(support_jack_module, "die_with_parent", None)
    if realtime and hook is not None:
        support_jack_module.die_with_parent = lambda: None
    try:
        server.start()
    finally:
        if hook is not None:
            support_jack_module.die_with_parent = hook
    try:
        yield server
    finally:
        server.stop()


def _rss_kb(pid: int | None) -> int | None:
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def percentile(values: list[float], q: float) -> float | None:
    data = sorted(values)
    if not data:
        return None
    return data[min(len(data) - 1, int(q * len(data)))]


def match_latencies(sends: dict[tuple[int, int], list[float]],
                    arrivals: list[tuple[float, list[int]]]) -> list[tuple[float, float]]:
    """(send time, latency s) for each tagged note-on answered: an arrival is matched with
    the latest send of its tag (channel, velocity) before it, each send at most once."""
    used: set[tuple[tuple[int, int], int]] = set()
    out = []
    for at, message in arrivals:
        if len(message) != 3 or message[0] & 0xF0 != 0x90 or message[2] == 0:
            continue
        tag = (message[0] & 0x0F, message[2])
        times = sends.get(tag)
        if not times:
            continue
        i = bisect.bisect_right(times, at) - 1
        if i < 0 or (tag, i) in used or at - times[i] > MATCH_WINDOW:
            continue
        used.add((tag, i))
        out.append((times[i], at - times[i]))
    return out


def note_durations(arrivals: list[tuple[float, list[int]]]) -> list[float]:
    """How long each output note sounded (note-on to the note-off that ended it)."""
    open_: dict[tuple[int, int], list[float]] = {}
    out = []
    for at, m in arrivals:
        if len(m) != 3 or m[0] & 0xF0 not in (0x80, 0x90):
            continue
        key = (m[0] & 0x0F, m[1])
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            open_.setdefault(key, []).append(at)
        elif open_.get(key):
            out.append(at - open_[key].pop())       # the latest: a lost note-off of an
            #                                           earlier one must not lengthen all later
    return out


class Player:
    """Sends each message to both subjects at the same moment and remembers when each
    tagged note-on went out."""

    def __init__(self, peers: dict[str, MidiPeer], seed: int) -> None:
        self.peers = peers
        self.rng = random.Random(seed)
        self.sends: dict[str, dict[tuple[int, int], list[float]]] = {n: {} for n in peers}
        self.sent_at: list[tuple[float, bool]] = []        # (time, in a burst)
        self.held: set[tuple[int, int]] = set()
        self.offs: list[tuple[float, int, int]] = []       # heap: (time, channel, key)
        self.counter = 0

    def press(self, now: float, burst: bool) -> None:
        idx = self.counter % TAGS
        self.counter += 1
        channel, velocity = idx % 16, 1 + idx // 16
        free = [k for k in range(36, 97) if (channel, k) not in self.held]
        key = self.rng.choice(free)
        names = list(self.peers) if idx % 2 == 0 else list(self.peers)[::-1]
        for name in names:
            t = time.perf_counter()
            self.peers[name].send([0x90 | channel, key, velocity])
            self.sends[name].setdefault((channel, velocity), []).append(t)
        self.held.add((channel, key))
        hold = self.rng.uniform(0.005, 0.020) if burst else self.rng.uniform(0.030, 0.150)
        heapq.heappush(self.offs, (now + hold, channel, key))
        self.sent_at.append((now, burst))

    def release_due(self, now: float) -> None:
        while self.offs and self.offs[0][0] <= now:
            _, channel, key = heapq.heappop(self.offs)
            for peer in self.peers.values():
                peer.send([0x80 | channel, key, 64])
            self.held.discard((channel, key))

    def release_all(self) -> None:
        self.release_due(float("inf"))

    def control(self, message: list[int]) -> None:
        self.peers["melodyflowd"].send(message)


def run_soak(cfg: SoakConfig, workdir: Path, log=print) -> dict[str, Any]:
    """Run one soak; returns the results (see the module doc). Starts and stops its own
    JACK server, echo client and melodyflowd."""
    model = cfg.model
    model_label = model
    if model is None:
        default = ROOT / "melodyflowd" / "models" / "default"
        if (default / "model.safetensors").exists():
            model, model_label = str(default), "embedded default"
        else:
            from tests.support.tiny_model import build_tiny_model

            model = str(build_tiny_model(workdir / "tiny-model"))
            model_label = "tiny random model (tests/support/tiny_model.py; no embedded model yet)"
    chart = workdir / "soak.yaml"
    chart.write_text(CHART)
    config = workdir / "soak-config.yaml"
    config.write_text(f"stats_interval: 10\ngeneration:\n  cache_dir: {workdir / 'cache'}\n"
                      f"  variations: {cfg.variations}\n")
    result: dict[str, Any] = {"config": asdict(cfg), "model": model_label,
                              "machine": machine_info()}
    reclaim_stale_servers()
    sys.setswitchinterval(0.0005)       # the receivers' JACK threads wait for the GIL
    with start_jack(cfg.realtime) as server:
        echo = subprocess.Popen([sys.executable, "-c", ECHO_CLIENT, "soak echo in",
                                 "soak echo out"], env=server.env)
        daemon = DaemonProcess(server, workdir, ["--chart", str(chart), "--model", model,
                                                 "--config", str(config),
                                                 "--seed", str(cfg.seed),
                                                 "--channels", "all"], tag="soak")
        peers: dict[str, MidiPeer] = {}
        try:
            server.wait_for_ports(["soak echo in", "soak echo out"], proc=echo)
            started = time.perf_counter()
            daemon.wait_ready(timeout=300)
            result["ready_seconds"] = round(time.perf_counter() - started, 2)
            peers["melodyflowd"] = daemon.peer("soak player")
            peers["echo"] = MidiPeer(to_port="soak echo in", from_port="soak echo out",
                                     name="soak echo player")
            result.update(_play(cfg, daemon, echo, peers, log))
        finally:
            for peer in peers.values():
                peer.close()
            status = daemon.stop(timeout=30)
            echo.send_signal(signal.SIGTERM)
            try:
                echo.wait(timeout=10)
            except subprocess.TimeoutExpired:
                echo.kill()
                echo.wait()
    result["exit_status"] = status
    result["log_tail"] = daemon.lines[-40:]
    crashes = result.setdefault("crashes", {})
    crashes["exit_status_nonzero"] = int(status != 0)
    stats = [line for line in daemon.lines if "stats:" in line]
    last = stats[-1] if stats else ""
    for name in ("notes remapped", "messages", "sent"):
        found = re.search(rf"{name} (\d+)", last)
        result[f"daemon_{name.replace(' ', '_')}"] = int(found.group(1)) if found else None
    sent = result.get("sent")
    if sent and result["daemon_messages"] is not None:
        result["transport_lost"] = {
            "to_melodyflowd": sent["note_on"] + sent["note_off"] + sent["control"]
            - result["daemon_messages"],
            "from_melodyflowd_note_ons": (result["daemon_notes_remapped"] or 0)
            - result["received"]["melodyflowd"]["note_on"],
            "echo_note_ons": sent["note_on"] - result["received"]["echo"]["note_on"]}
    owed = [line for line in daemon.lines if "note-offs for what was sounding" in line]
    result["engine_owed_at_stop"] = sum(int(re.search(r"sent (\d+)", line).group(1))
                                        for line in owed)
    if "transport_lost" in result and result.get("daemon_sent") is not None:
        # every message the daemon's callback sent (its stats line counts them; the
        # note-offs owed at SIGTERM went out after the peer's account was taken)
        result["transport_lost"]["from_melodyflowd"] = (
            result["daemon_sent"] - result["engine_owed_at_stop"]
            - result["received"]["melodyflowd"]["total"])
    for name in ("engine errors", "callback errors"):
        found = re.search(rf"{name} (\d+)", last)
        crashes[name.replace(" ", "_")] = int(found.group(1)) if found else -1
    crashes["tracebacks"] = sum("Traceback" in line for line in daemon.lines)
    crashes["main_loop_errors"] = sum("internal error in the main loop" in line
                                      for line in daemon.lines)
    result["crash_total"] = sum(abs(v) for v in crashes.values())
    return result


def _play(cfg: SoakConfig, daemon: DaemonProcess, echo: subprocess.Popen,
          peers: dict[str, MidiPeer], log) -> dict[str, Any]:
    player = Player(peers, cfg.seed)
    pid = daemon.proc.pid
    t0 = time.perf_counter()
    end = t0 + cfg.seconds
    next_base = t0
    next_burst_start = t0 + cfg.burst_every / 2
    burst_until = -1.0
    next_burst_note = 0.0
    next_regen = t0 + cfg.regen_every
    next_hup = t0 + cfg.hup_every
    next_sample = t0
    regen_count = {"cc": 0, "sigusr1": 0}
    hups = 0
    samples: list[dict[str, Any]] = []
    children_seen: set[int] = set()
    bursts: list[tuple[float, float, int]] = []
    burst_notes = 0
    died: str | None = None
    while True:
        now = time.perf_counter()
        if now >= end:
            break
        player.release_due(now)
        if now >= next_base:
            player.press(now, burst=False)
            next_base += 1.0 / cfg.rate
            if next_base < now - 0.5:          # fell far behind (a stall): do not flood
                next_base = now
        if burst_until < 0 and now >= next_burst_start:
            burst_until = now + cfg.burst_seconds
            next_burst_note = now
            burst_notes = 0
            burst_begin = now
        if burst_until >= 0:
            while next_burst_note <= now and next_burst_note < burst_until:
                player.press(now, burst=True)
                burst_notes += 1
                next_burst_note += 1.0 / cfg.burst_rate
            if now >= burst_until:
                bursts.append((round(burst_begin - t0, 3), round(now - burst_begin, 3),
                               burst_notes))
                burst_until = -1.0
                next_burst_start += cfg.burst_every
        if now >= next_regen:
            if (regen_count["cc"] + regen_count["sigusr1"]) % 2 == 0:
                player.control([0xB0, REGENERATE_CC, 127])
                regen_count["cc"] += 1
            else:
                daemon.send_signal(signal.SIGUSR1)
                regen_count["sigusr1"] += 1
            next_regen += cfg.regen_every
        if now >= next_hup:
            daemon.send_signal(signal.SIGHUP)
            hups += 1
            next_hup += cfg.hup_every
        if now >= next_sample:
            child = generator_child(pid)
            if child is not None:
                children_seen.add(child)
            samples.append({"t": round(now - t0, 2), "rss_kb": _rss_kb(pid),
                            "child_rss_kb": _rss_kb(child), "load1": os.getloadavg()[0],
                            "notes": player.counter})
            next_sample += 1.0
            if daemon.proc.poll() is not None:
                died = f"melodyflowd exited with {daemon.proc.returncode} at {now - t0:.1f} s"
                break
            if echo.poll() is not None:
                died = f"the echo client exited with {echo.returncode} at {now - t0:.1f} s"
                break
            if int(now - t0) % 60 == 0 and samples[-1]["t"] >= 1:
                log(f"  {now - t0:5.0f} s: {player.counter} notes, rss "
                    f"{samples[-1]['rss_kb']} kB, load {samples[-1]['load1']:.1f}")
        upcoming = min(next_base, next_regen, next_hup, next_sample,
                       player.offs[0][0] if player.offs else end,
                       next_burst_note if burst_until >= 0 else next_burst_start)
        time.sleep(max(0.0, min(upcoming - time.perf_counter(), 0.002)))
    played = time.perf_counter() - t0
    player.release_all()
    # Every key is up: what melodyflowd still holds (after it settled) is stuck.
    mfd = peers["melodyflowd"]
    mfd.wait_for(lambda got: not note_balance(got)[0], timeout=5)
    time.sleep(0.5)
    with mfd._lock:
        d_arrivals = [(r.at, r.message) for r in mfd.received]
    with peers["echo"]._lock:
        e_arrivals = [(r.at, r.message) for r in peers["echo"].received]
    sounding, orphans = note_balance([m for _, m in d_arrivals])
    e_sounding, _ = note_balance([m for _, m in e_arrivals])
    alive_end = daemon.proc.poll() is None

    lat = {"melodyflowd": match_latencies(player.sends["melodyflowd"], d_arrivals),
           "echo": match_latencies(player.sends["echo"], e_arrivals)}
    windows = []
    n_windows = max(1, int(round(played / cfg.window)))
    for w in range(n_windows):
        lo, hi = t0 + w * cfg.window, t0 + (w + 1) * cfg.window
        row: dict[str, Any] = {"window": w, "start_s": w * cfg.window,
                               "notes": sum(1 for t, _ in player.sent_at if lo <= t < hi)}
        for name, pairs in lat.items():
            values = [x * 1000 for t, x in pairs if lo <= t < hi]
            row[name] = {"n": len(values), "p50_ms": percentile(values, 0.5),
                         "p99_ms": percentile(values, 0.99),
                         "max_ms": max(values) if values else None}
        e99, d99 = row["echo"]["p99_ms"], row["melodyflowd"]["p99_ms"]
        row["ratio_p99"] = d99 / e99 if e99 and d99 else None
        row["swaps"] = sum(1 for s in daemon.events("swaps in at the next bar line", t0)
                           if w * cfg.window <= s < (w + 1) * cfg.window)
        windows.append(row)
    answered_at = {t for t, _ in lat["melodyflowd"]}
    unanswered = sorted(round(t - t0, 3) for times in player.sends["melodyflowd"].values()
                        for t in times if t not in answered_at)
    durations = note_durations(d_arrivals)
    sent_total = player.counter
    answered = len(lat["melodyflowd"])
    rss = [s["rss_kb"] for s in samples if s["rss_kb"]]
    child_rss = [s["child_rss_kb"] for s in samples if s["child_rss_kb"]]
    overall = {}
    for name, pairs in lat.items():
        values = [x * 1000 for _, x in pairs]
        overall[name] = {"n": len(values), "p50_ms": percentile(values, 0.5),
                         "p99_ms": percentile(values, 0.99),
                         "max_ms": max(values) if values else None}
    steady = {}
    burst_times = [(t0 + b, t0 + b + d) for b, d, _ in bursts]
    for name, pairs in lat.items():
        values = [x * 1000 for t, x in pairs
                  if not any(lo - 0.05 <= t <= hi + 0.5 for lo, hi in burst_times)]
        steady[name] = {"n": len(values), "p99_ms": percentile(values, 0.99)}
    child_deaths = [line for line in daemon.lines if "generator process (pid" in line]
    received = {name: _kinds([m for _, m in arrivals])
                for name, arrivals in (("melodyflowd", d_arrivals), ("echo", e_arrivals))}
    return {
        "sent": {"note_on": sent_total, "note_off": sent_total,
                 "control": regen_count["cc"]},
        "received": received,
        "played_seconds": round(played, 1),
        "notes_sent": sent_total,
        "notes_answered": answered,
        "echo_answered": len(lat["echo"]),
        "bursts": [{"t": b, "seconds": d, "notes": n,
                    "rate": round(n / d, 1) if d else None} for b, d, n in bursts],
        "regenerations_asked": regen_count,
        "sighups": hups,
        "banks_ready": len(daemon.events("phrase bank ready", t0)),
        "swaps": len(daemon.events("swaps in at the next bar line", t0)),
        "generation_failures": sum("generation failed" in line for line in daemon.lines),
        "superseded": sum("superseded by" in line for line in daemon.lines),
        "stuck_notes": sum(sounding.values()),
        "stuck_detail": {f"{c + 1}:{p}": n for (c, p), n in sounding.items()},
        "orphan_note_offs": len(orphans),
        "echo_unbalanced": sum(e_sounding.values()),
        "unanswered_at": unanswered[:500],      # seconds into the soak, for the timeline
        "long_notes": sum(1 for d in durations if d > LONG_NOTE),
        "max_note_seconds": max(durations) if durations else None,
        "rss_kb": {"start": rss[0] if rss else None, "end": rss[-1] if rss else None,
                   "max": max(rss) if rss else None},
        "child_rss_kb": {"start": child_rss[0] if child_rss else None,
                         "end": child_rss[-1] if child_rss else None,
                         "max": max(child_rss) if child_rss else None},
        "crashes": {"daemon_died": int(died is not None and "melodyflowd" in died
                                       or not alive_end),
                    "echo_died": int(died is not None and "echo" in died),
                    "generator_child_deaths": len(child_deaths)},
        "died": died,
        "generator_children_seen": len(children_seen),
        "latency_overall": overall,
        "latency_steady": steady,
        "windows": windows,
        "samples": samples,
        "events": {"swaps": daemon.events("swaps in at the next bar line", t0),
                   "banks_ready": daemon.events("phrase bank ready", t0),
                   "sighup": daemon.events("SIGHUP: reloading", t0),
                   "regenerating": daemon.events("regenerating (", t0)},
    }


def _kinds(messages: list[list[int]]) -> dict[str, int]:
    ons = sum(1 for m in messages if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0)
    offs = sum(1 for m in messages if len(m) == 3 and (m[0] & 0xF0 == 0x80
                                                       or m[0] & 0xF0 == 0x90 and m[2] == 0))
    return {"note_on": ons, "note_off": offs, "total": len(messages)}


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count(), "loadavg": os.getloadavg()}
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            name, _, value = line.partition(":")
            if name.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Architecture",
                                "CPU max MHz", "L3 cache"):
                info[name.strip()] = value.strip()
    return info


def print_report(r: dict[str, Any]) -> None:
    def ms(x: float | None) -> str:
        return f"{x:8.2f}" if x is not None else "       -"

    cfg = r["config"]
    print(f"\nsoak: {r.get('played_seconds', 0):.0f} s, model {r['model']}, "
          f"{r.get('notes_sent', 0)} notes sent ({cfg['rate']:g}/s steady, bursts of "
          f"{cfg['burst_rate']:g}/s for {cfg['burst_seconds']:g} s every "
          f"{cfg['burst_every']:g} s, 16 channels)")
    if "windows" not in r:
        print(f"  did not play: {r.get('died')}")
        return
    print(f"regenerations asked {r['regenerations_asked']}, SIGHUPs {r['sighups']}, "
          f"banks ready {r['banks_ready']}, swaps {r['swaps']}, failures "
          f"{r['generation_failures']}, superseded {r['superseded']}")
    print(f"stuck notes {r['stuck_notes']}  orphan note-offs {r['orphan_note_offs']}  "
          f"crashes {r['crash_total']} {r['crashes']}  exit status {r['exit_status']}")
    print(f"notes answered {r['notes_answered']}/{r['notes_sent']} (echo "
          f"{r['echo_answered']}); output notes longer than {LONG_NOTE:g} s: "
          f"{r['long_notes']}")
    rec = r["received"]
    print(f"messages: sent to each {r['sent']['note_on']} note-ons + {r['sent']['note_off']} "
          f"note-offs (+{r['sent']['control']} CC to melodyflowd); melodyflowd handled "
          f"{r['daemon_messages']} and remapped {r['daemon_notes_remapped']}; received from "
          f"melodyflowd {rec['melodyflowd']['note_on']} on / {rec['melodyflowd']['note_off']} "
          f"off, from echo {rec['echo']['note_on']} on / {rec['echo']['note_off']} off; "
          f"note-offs the engine still owed at stop: {r['engine_owed_at_stop']}")
    print(f"lost in JACK transport (not by melodyflowd): {r.get('transport_lost')}; "
          f"JACK {'realtime' if cfg['realtime'] else 'no-realtime'}")
    print(f"RSS melodyflowd {r['rss_kb']['start']} -> {r['rss_kb']['end']} kB (max "
          f"{r['rss_kb']['max']}); generator child {r['child_rss_kb']['start']} -> "
          f"{r['child_rss_kb']['end']} kB (max {r['child_rss_kb']['max']})")
    print(f"{'window':>7}{'notes':>7}{'echo p50':>10}{'echo p99':>10}{'mfd p50':>9}"
          f"{'mfd p99':>9}{'ratio':>7}{'swaps':>6}")
    for w in r["windows"]:
        ratio = f"{w['ratio_p99']:7.2f}" if w["ratio_p99"] else "      -"
        print(f"{w['start_s']:>6.0f}s{w['notes']:>7}{ms(w['echo']['p50_ms'])}  "
              f"{ms(w['echo']['p99_ms'])}{ms(w['melodyflowd']['p50_ms'])} "
              f"{ms(w['melodyflowd']['p99_ms'])}{ratio}{w['swaps']:>6}")
    o = r["latency_overall"]
    print(f"overall p99: echo {ms(o['echo']['p99_ms'])} ms, melodyflowd "
          f"{ms(o['melodyflowd']['p99_ms'])} ms; load average at start "
          f"{' '.join(f'{x:.1f}' for x in r['machine']['loadavg'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--burst-rate", type=float, default=1000.0)
    parser.add_argument("--burst-seconds", type=float, default=1.0)
    parser.add_argument("--burst-every", type=float, default=20.0)
    parser.add_argument("--regen-every", type=float, default=10.0)
    parser.add_argument("--hup-every", type=float, default=60.0)
    parser.add_argument("--variations", type=int, default=4)
    parser.add_argument("--model", help="model dir (default: the embedded model, else a tiny "
                        "random one)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--realtime", action="store_true",
                        help="run JACK with SCHED_FIFO process threads, as on a music machine "
                        "(default: --no-realtime, as in the tests)")
    parser.add_argument("--json-out", help="write the results to this JSON file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cfg = SoakConfig(seconds=args.minutes * 60, rate=args.rate, burst_rate=args.burst_rate,
                     burst_seconds=args.burst_seconds, burst_every=args.burst_every,
                     regen_every=args.regen_every, hup_every=args.hup_every,
                     variations=args.variations, model=args.model, seed=args.seed,
                     realtime=args.realtime)
    with tempfile.TemporaryDirectory(prefix="mfd-soak-") as tmp:
        result = run_soak(cfg, Path(tmp))
    result["machine"]["loadavg_end"] = os.getloadavg()
    print_report(result)
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(result, indent=1))
        print(f"wrote {args.json_out}")
    ok = result["stuck_notes"] == 0 and result["crash_total"] == 0 \
        and result["orphan_note_offs"] == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
