"""A private JACK server (dummy driver) and MIDI client helpers for tests and benchmarks.

Each `JackServer` has its own server name (JACK_DEFAULT_SERVER), so tests never touch a
user's JACK session and parallel runs do not meet. Clients in this process find it
through the environment variable, which `JackServer.start` sets; subprocesses inherit it.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

JACKD = shutil.which("jackd")
# 256 frames at 48 kHz: a 5.3 ms period. Shorter periods drop MIDI on the dummy driver.
JACKD_ARGS = ("--no-realtime", "-d", "dummy", "-r", "48000", "-p", "256")


def die_with_parent() -> None:
    """In a child before exec: SIGTERM it when the process that started it dies (a test
    run killed by a timeout must not leave jackd or a daemon behind). Linux only."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG


def jack_available() -> str | None:
    """None when a JACK server can be started here, else the reason why not."""
    if JACKD is None:
        return "jackd not installed (apt-get install jackd2)"
    try:
        import rtmidi
    except ImportError:
        return "python-rtmidi not installed"
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return "python-rtmidi built without JACK"
    return None


def remove_jack_leftovers(name: str) -> None:
    """After the server `name` stopped (or was killed): remove the files it and its clients
    left (semaphores, socket), its registry slot, and the memory segments of dead servers."""
    from tests.support.jack_registry import (
        reclaim_stale_servers,
        release_dead_segments,
        remove_server_files,
    )

    remove_server_files(name)
    reclaim_stale_servers()
    release_dead_segments()


class _SlotsFull(Exception):
    pass


def reclaim_dead_servers() -> list[str]:
    """Free the jack2 server slots of servers that died without unregistering (SIGKILL):
    jackd itself reclaims a dead entry when a server of the same name starts, so start one
    under each such name and stop it cleanly. Returns the names freed."""
    registry = Path("/dev/shm/jack-shm-registry")
    try:
        data = registry.read_bytes()[:8 * 512]
    except OSError:
        return []
    uid = os.getuid()
    freed = []
    for match in re.finditer(rb"jack-%d:([^:\x00]+):" % uid, data):
        pid = int.from_bytes(data[match.start() - 4:match.start()], "little")
        name = match.group(1).decode(errors="replace")
        if pid <= 0 or Path(f"/proc/{pid}").exists():
            continue
        env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
        proc = subprocess.Popen([JACKD, *JACKD_ARGS], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, preexec_fn=die_with_parent)
        for _ in range(50):
            if proc.poll() is not None:
                break
            if subprocess.run(["jack_lsp"], env=env, capture_output=True).returncode == 0:
                freed.append(name)
                break
            time.sleep(0.1)
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        remove_jack_leftovers(name)
    return freed


class JackServer:
    """`jackd -d dummy` under a unique server name; start() waits until it answers."""

    def __init__(self, name: str | None = None, realtime: bool = False) -> None:
        self.name = name or f"mfd-test-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.realtime = realtime          # SCHED_FIFO process threads (needs the rights)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: str | None = None
        self._previous: str | None = None

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "JACK_DEFAULT_SERVER": self.name, "JACK_NO_AUDIO_RESERVATION": "1"}

    def start(self, timeout: float = 15.0) -> JackServer:
        if JACKD is None:
            raise RuntimeError("jackd not installed")
        self._previous = os.environ.get("JACK_DEFAULT_SERVER")
        os.environ["JACK_DEFAULT_SERVER"] = self.name
        os.environ["JACK_NO_AUDIO_RESERVATION"] = "1"
        # jack2 has 8 server slots per machine; a server that was SIGKILLed keeps its slot
        # until a server of the same name starts. When they are all taken, free the dead
        # ones and wait a little for live ones (other test runs) to end.
        give_up = time.monotonic() + 60.0
        while True:
            try:
                return self._start_once(timeout)
            except _SlotsFull:
                if time.monotonic() > give_up:
                    self.stop()
                    raise RuntimeError("jackd: too many JACK servers already active") from None
                reclaim_dead_servers()
                time.sleep(1.0)

    def _start_once(self, timeout: float) -> JackServer:
        args = ("--realtime", *JACKD_ARGS[1:]) if self.realtime else JACKD_ARGS
        # Its chatter goes to a file: a pipe that nobody reads fills up, and then jackd
        # blocks in write() and every client with it.
        fd, self.log_path = tempfile.mkstemp(prefix=f"{self.name}-", suffix=".log")
        with os.fdopen(fd, "wb") as log:
            self.proc = subprocess.Popen([JACKD, *args], env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=log,
                                         start_new_session=True, preexec_fn=die_with_parent)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = Path(self.log_path).read_text(errors="replace")
                os.unlink(self.log_path)
                self.log_path = None
                if "Too many servers already active" in err:
                    raise _SlotsFull
                raise RuntimeError(f"jackd exited with {self.proc.returncode}: {err[-500:]}")
            if subprocess.run(["jack_lsp"], env=self.env, capture_output=True).returncode == 0:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"jackd did not answer within {timeout} s")

    def stop(self) -> None:
        started = self.proc is not None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if started:
            remove_jack_leftovers(self.name)
        if self.log_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.log_path)
            self.log_path = None
        if self._previous is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = self._previous

    def ports(self) -> list[str]:
        out = subprocess.run(["jack_lsp"], env=self.env, capture_output=True, text=True)
        return out.stdout.split("\n")

    def wait_for_ports(self, names: Iterable[str], timeout: float = 20.0,
                       proc: subprocess.Popen | None = None) -> None:
        """Wait until each name is (part of) a port; fail early if `proc` died."""
        names = list(names)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            present = self.ports()
            if all(any(n in p for p in present) for n in names):
                return
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before its ports")
            time.sleep(0.05)
        raise TimeoutError(f"ports {names} did not appear in {timeout} s")

    def __enter__(self) -> JackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Received:
    message: list[int]
    at: float              # time.perf_counter() when the callback ran


@dataclass
class MidiPeer:
    """A second client: an output connected to a daemon's input, an input connected to its
    output, and a log of what arrived (with perf_counter times of when it was read).

    The input is read without a Python callback: rtmidi's JACK thread queues what arrives
    (no GIL needed there, so this process's own Python work cannot make it miss a JACK
    cycle and lose events), and a reader thread drains the queue every millisecond."""

    to_port: str
    from_port: str | None = None
    name: str = "mfd test peer"
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        import rtmidi

        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._stop = threading.Event()
        self.sent = 0                      # messages sent to the daemon
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, f"{self.name} out")
        self.out.open_port(_index(self.out.get_ports(), self.to_port))
        self.inp = None
        self._reader: threading.Thread | None = None
        if self.from_port is not None:
            self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, f"{self.name} in",
                                     queue_size_limit=1 << 16)
            self.inp.ignore_types(sysex=False, timing=False, active_sense=False)
            self.inp.open_port(_index(self.inp.get_ports(), self.from_port))
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()

    def _read(self) -> None:
        get = self.inp.get_message
        while not self._stop.is_set():
            event = get()
            if event is None:
                time.sleep(0.001)
                continue
            now = time.perf_counter()
            with self._lock:
                self.received.append(Received(list(event[0]), now))

    def send(self, message: Sequence[int]) -> None:
        # One writer at a time: rtmidi's JACK output is a single-writer ring buffer, and the
        # clock thread sends while the test plays.
        with self._send_lock:
            self.out.send_message(list(message))
            self.sent += 1

    def messages(self) -> list[list[int]]:
        with self._lock:
            return [r.message for r in self.received]

    def clear(self) -> None:
        with self._lock:
            self.received.clear()

    def wait_for(self, predicate, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self.messages()):
                return True
            time.sleep(0.01)
        return predicate(self.messages())

    def close(self) -> None:
        self._stop.set()
        if self._reader is not None:
            self._reader.join(timeout=2)
        if self.inp is not None:
            self.inp.close_port()
            self.inp.delete()
            self.inp = None
        self.out.close_port()
        self.out.delete()


def _index(ports: Sequence[str], name: str) -> int:
    for i, port in enumerate(ports):
        if name in port:
            return i
    raise LookupError(f"no port containing {name!r} in {list(ports)}")


def note_ons(messages: Iterable[Sequence[int]]) -> list[tuple[int, int]]:
    """(channel, pitch) of every note-on with velocity > 0, in order."""
    return [(m[0] & 0x0F, m[1]) for m in messages
            if len(m) == 3 and m[0] & 0xF0 == 0x90 and m[2] > 0]


def note_balance(messages: Iterable[Sequence[int]]
                 ) -> tuple[dict[tuple[int, int], int], list[tuple[int, int]]]:
    """(sounding, orphan_offs): which (channel, pitch) still sound after these messages and
    how many times, and every note-off that ended nothing (a note that was not sounding).

    A note-off or a velocity-0 note-on ends one note-on of the same channel and pitch.
    """
    count: dict[tuple[int, int], int] = {}
    orphans: list[tuple[int, int]] = []
    for m in messages:
        if len(m) != 3 or m[0] & 0xF0 not in (0x80, 0x90):
            continue
        key = (m[0] & 0x0F, m[1])
        if m[0] & 0xF0 == 0x90 and m[2] > 0:
            count[key] = count.get(key, 0) + 1
        elif count.get(key, 0) > 0:
            count[key] -= 1
        else:
            orphans.append(key)
    return {k: v for k, v in count.items() if v}, orphans


class ClockSender:
    """Sends MIDI clock (24 ppqn) at a tempo from a thread: Start, then 0xF8 ticks; the
    first tick (sent at once) is beat 0. As a context manager: started on entry, stopped
    with a Stop message on exit."""

    def __init__(self, peer: MidiPeer, bpm: float) -> None:
        self.peer = peer
        self.interval = 60.0 / bpm / 24.0
        self.t0 = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> ClockSender:
        self.t0 = time.perf_counter()
        self.peer.send([0xFA])
        self._thread.start()
        return self

    def beat(self) -> float:
        """The beat the clock has reached (ticks sent / 24)."""
        return (time.perf_counter() - self.t0) / (self.interval * 24.0)

    def wait_until_beat(self, beat: float) -> None:
        target = self.t0 + beat * self.interval * 24.0
        while (left := target - time.perf_counter()) > 0:
            time.sleep(min(left, 0.005))

    def _run(self) -> None:
        tick = 0                    # MIDI: the first clock after Start is the downbeat
        while not self._stop.is_set():
            target = self.t0 + tick * self.interval
            left = target - time.perf_counter()
            if left > 0:
                time.sleep(left)
            self.peer.send([0xF8])
            tick += 1

    def stop(self, send_stop: bool = False) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        if send_stop:
            self.peer.send([0xFC])

    def __enter__(self) -> ClockSender:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(send_stop=True)


# The baseline the benches measure against: a plain python-rtmidi client whose
# callback sends back what came (argv: in-port name, out-port name).
ECHO_CLIENT = """
import signal, sys, rtmidi
api = rtmidi.API_UNIX_JACK
out = rtmidi.MidiOut(api, sys.argv[2]); out.open_virtual_port(sys.argv[2])
inp = rtmidi.MidiIn(api, sys.argv[1]); inp.open_virtual_port(sys.argv[1])
inp.ignore_types(sysex=False, timing=False, active_sense=False)
send = out.send_message
inp.set_callback(lambda event, data: send(event[0]))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
while True:
    signal.pause()
"""


def generator_child(pid: int) -> int | None:
    """The daemon's spawned generator process (not multiprocessing's resource tracker)."""
    children: list[int] = []
    with contextlib.suppress(OSError):
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += [int(c) for c in (task / "children").read_text().split()]
    for child in children:
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            if b"multiprocessing" in cmdline and b"resource_tracker" not in cmdline:
                return child
    return None


def bench_chart(title: str) -> str:
    """The eight-bar chart the latency and soak benches play (chord changes every bar)."""
    return (f"title: {title}\ntempo: 120\ntime: 4/4\n"
            'chords: "| Dm7 G7 | Cmaj7 | Cm7 F7 | Bbmaj7 | Ebm7 Ab7 | Dbmaj7 | Dm7b5 G7 | Cm6 |"\n')


DAEMON_CMD = (sys.executable, "-c",
              "from melodyflowd.cli import daemon_main; daemon_main(prog_name='melodyflowd')")


class NotifyListener:
    """A real NOTIFY_SOCKET: a unix datagram socket collecting sd_notify messages."""

    def __init__(self, directory: Path) -> None:
        self.path = str(directory / f"notify-{uuid.uuid4().hex[:6]}.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except (TimeoutError, OSError):
                continue
            self.messages.append(data.decode(errors="replace"))

    def lines(self) -> list[str]:
        return [line for message in list(self.messages) for line in message.split("\n")]

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)


class OutputLines:
    """A text-mode process's stdout, collected line by line in a thread (a pipe that
    nobody reads fills up, and then the process blocks in write())."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self.stamps: list[float] = []        # perf_counter() when each line came in
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stamps.append(time.perf_counter())
            self.lines.append(line.rstrip("\n"))

    def join(self) -> None:
        """Wait (a little) for the lines of a process that has ended."""
        self._reader.join(timeout=2)

    def close(self) -> None:
        """After the process ended: its last lines in, the pipe closed."""
        self.join()
        if self.proc.stdout:
            self.proc.stdout.close()


class DaemonProcess:
    """`melodyflowd ... --backend jack` as a subprocess on a JackServer, with its stderr
    collected line by line and its sd_notify messages on a real socket."""

    def __init__(self, server: JackServer, workdir: Path, args: Sequence[str],
                 tag: str | None = None, env: dict[str, str] | None = None) -> None:
        tag = tag or uuid.uuid4().hex[:6]
        self.server = server
        self.in_name = f"mfd{tag} in"
        self.out_name = f"mfd{tag} out"
        self.notify = NotifyListener(workdir)
        cmd = [*DAEMON_CMD, *args, "--backend", "jack", "--in-name", self.in_name,
               "--out-name", self.out_name]
        self.proc = subprocess.Popen(
            cmd, env={**server.env, "NOTIFY_SOCKET": self.notify.path, **(env or {})},
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, cwd=workdir, preexec_fn=die_with_parent)
        self._output = OutputLines(self.proc)
        self.lines = self._output.lines

    def log(self) -> str:
        return "\n".join(self.lines)

    def events(self, text: str, t0: float) -> list[float]:
        """When (seconds after perf_counter() t0) each line containing text came in."""
        return [round(stamp - t0, 3) for stamp, line in
                zip(self._output.stamps, list(self.lines), strict=False) if text in line]

    def wait_log(self, text: str, timeout: float = 10.0, after: int = 0) -> bool:
        """True once a stderr line (from index `after` on) contains text."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(text in line for line in self.lines[after:]):
                return True
            if self.proc.poll() is not None:
                time.sleep(0.1)
                return any(text in line for line in self.lines[after:])
            time.sleep(0.02)
        return False

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "READY=1" in self.notify.lines():
                self.server.wait_for_ports([self.in_name, self.out_name], timeout=5)
                return
            if self.proc.poll() is not None:
                self._output.join()
                raise RuntimeError(f"melodyflowd exited with {self.proc.returncode}:\n"
                                   + self.log())
            time.sleep(0.02)
        raise TimeoutError(f"melodyflowd sent no READY=1 in {timeout} s:\n" + self.log())

    def peer(self, name: str = "mfd test peer") -> MidiPeer:
        return MidiPeer(to_port=self.in_name, from_port=self.out_name, name=name)

    def send_signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def final_stats(self) -> dict[str, int]:
        """The counters of the last stats line (the daemon logs one when it stops)."""
        lines = [line for line in self.lines if "stats:" in line]
        if not lines:
            return {}
        return {name.replace(" ", "_"): int(found.group(1)) for name in (
            "notes remapped", "messages", "sent", "dropped", "engine errors",
            "callback errors", "bank swaps")
            if (found := re.search(rf"{name} (\d+)", lines[-1]))}

    def transport_loss(self, peer: MidiPeer, joined: int = 0) -> str | None:
        """After stop(): why JACK, not the daemon, may explain a difference, else None.
        JACK drops the events of a period that a client misses; on a busy machine without
        realtime scheduling that happens now and then. The daemon counts what reached its
        callback and what it sent, the peer what it sent and what came back. `joined`:
        messages the test knows rtmidi's input joins into others (a SysEx without its end
        takes the following messages in, up to an 0xF7)."""
        stats = self.final_stats()
        if not stats:
            return None
        expected = peer.sent - joined
        if stats["messages"] < expected:
            return f"JACK lost {expected - stats['messages']} of {expected} messages " \
                   "on the way in"
        received = len(peer.received)
        if received < stats["sent"]:
            return f"JACK lost {stats['sent'] - received} of {stats['sent']} messages on " \
                   "the way out"
        return None

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._output.close()
        self.notify.close()
        return self.proc.returncode


# How long the peer's reader gets, after the daemon stopped, to take in what it sent last.
DRAIN = 0.1


@dataclass
class Take:
    """One take through a daemon: the peer that played it and, once the `take` block
    ended, the daemon's exit status and why JACK (not the daemon) may have lost messages
    (`DaemonProcess.transport_loss`; None: nothing lost)."""

    daemon: DaemonProcess
    peer: MidiPeer
    status: int | None = None
    loss: str | None = None

    def skip_if_lost(self) -> None:
        """A take in which JACK dropped messages proves nothing either way: skip the test."""
        if self.loss is not None:
            # (imported here: bench/ imports this module, and runs without pytest)
            import pytest

            pytest.skip(f"JACK lost messages on this busy machine ({self.loss})")


@contextlib.contextmanager
def take(daemon: DaemonProcess, ready_timeout: float = 30.0, settle: float | None = 3.0,
         joined: int = 0, signum: int = signal.SIGTERM) -> Iterator[Take]:
    """Wait for the daemon's READY, open a peer on its ports and yield the Take to play.

    When the block ends normally: wait up to `settle` seconds for every note to end
    (None: do not wait), stop the daemon with `signum` (the status goes into the Take),
    let the peer take in the rest and work out the loss (`joined`: see transport_loss).
    In every case the daemon is stopped and the peer closed."""
    peer = None
    try:
        daemon.wait_ready(timeout=ready_timeout)
        peer = daemon.peer()
        run = Take(daemon, peer)
        yield run
        if settle is not None:
            peer.wait_for(lambda got: not note_balance(got)[0], timeout=settle)
        run.status = daemon.stop(signum)
        time.sleep(DRAIN)
        run.loss = daemon.transport_loss(peer, joined=joined)
    finally:
        daemon.stop(signum)
        if peer is not None:
            peer.close()


def until_no_loss(one_take: Callable[[int], tuple[T, str | None]], tries: int = 3) -> T:
    """Run `one_take(attempt)` (it returns its result and its JACK loss) until a take
    loses nothing; a take in which JACK dropped messages (a client that missed a period
    on this busy machine) proves nothing either way. Fails when every take lost some."""
    loss = None
    for attempt in range(tries):
        result, loss = one_take(attempt)
        if loss is None:
            return result
        print(f"take {attempt}: {loss}; again")
    raise AssertionError(f"every take lost messages in JACK: {loss}")


def write_bank(path: Path, bars: Sequence[Sequence[tuple[str, float, float]]],
               variations: Sequence[Sequence[Sequence[tuple[int, float, str]]]],
               title: str = "test", tempo: float = 120, time_sig: tuple[int, int] = (4, 4)
               ) -> Path:
    """A phrase bank file in the bank JSON format (music/phrases.py): bars as (symbol,
    start_beat, beats) chord spans, each variation's notes per bar as (pitch, beat, chord
    symbol)."""
    ms_per_beat = 60000.0 / tempo
    out_vars = []
    for variation in variations:
        out_bars = []
        for index, notes in enumerate(variation):
            entries = []
            for k, (pitch, beat, chord) in enumerate(notes):
                nxt = notes[k + 1][1] if k + 1 < len(notes) else time_sig[0]
                wait = max(1, round((nxt - beat) * ms_per_beat))
                entries.append({"pitch": pitch, "duration_ms": max(1, wait - 10),
                                "wait_ms": wait, "velocity": 80, "beat": beat,
                                "chord": chord})
            out_bars.append({"bar": index, "notes": entries})
        out_vars.append(out_bars)
    data = {"format": "melodyflow-bank/1",
            "chart": {"title": title, "tempo": tempo, "time": list(time_sig)},
            "model": "test", "adapter": None, "seed": 0,
            "settings": {"scale": "chord-scale", "temperature": 0.9},
            "bars": [{"index": i, "chords": [{"symbol": s, "start_beat": b, "beats": n}
                                             for s, b, n in bar]}
                     for i, bar in enumerate(bars)],
            "variations": out_vars}
    path.write_text(json.dumps(data, indent=1))
    return path
