"""MIDI ports through python-rtmidi: virtual in/out ports (ALSA, JACK, CoreMIDI), or
existing ports opened by name (Windows, which has no virtual ports).

The real-time path is `_make_callback`: it calls the handler (the engine's `handle`)
with the message and a `time.perf_counter` timestamp, sends what comes back, and writes
the handler's time (perf_counter_ns around `handle`) into a preallocated ring. No
logging, no I/O, no locks: the main loop reads the ring and the error counter when it
prints its stats line.

SysEx: a message that starts with 0xF0 takes the rare path: midistream.split_messages
takes apart what rtmidi joined after a SysEx without its end byte (the messages a player
sent after it are played), and a SysEx goes on only when `ports.sysex` allows it, it is
whole and not longer than SYSEX_MAX_BYTES; the others are counted in `Timing.dropped`.
rtmidi's JACK input delivers nothing while a SysEx is open, so on JACK a small client of
ours, `SysexClear`, sends an empty SysEx into our input port every few milliseconds: it
closes an open SysEx and is never passed on.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from melodyflowd.errors import RetryError, UserError
from melodyflowd.live.midistream import SYSEX, SYSEX_CLEAR, split_messages, sysex_passes
from melodyflowd.settings import AUTO_BACKEND, BACKENDS

Handler = Callable[[list[int], float], Sequence[Sequence[int]]]

BACKEND_NAMES = tuple(name for name in BACKENDS if name != AUTO_BACKEND)
ALSA_SEQUENCER = "/dev/snd/seq"
RING_SIZE = 4096                     # a power of two: the callback masks, never divides
_RING_MASK = RING_SIZE - 1
_ALSA_ADDRESS = re.compile(r"\s+\d+:\d+$")
SYSEX_CLEAR_SECONDS = 0.01       # how long rtmidi's JACK input may stay deaf to an open SysEx


def _rtmidi() -> Any:
    try:
        import rtmidi
    except ImportError as exc:  # pragma: no cover - a broken install
        raise UserError(f"python-rtmidi is not installed ({exc}); pip install python-rtmidi"
                        ) from exc
    return rtmidi


def _api(backend: str) -> int:
    rtmidi = _rtmidi()
    apis = {"alsa": rtmidi.API_LINUX_ALSA, "jack": rtmidi.API_UNIX_JACK,
            "coremidi": rtmidi.API_MACOSX_CORE, "windows": rtmidi.API_WINDOWS_MM}
    if backend not in apis:
        raise UserError(f"unknown MIDI backend {backend!r}; accepted: "
                        + ", ".join(BACKEND_NAMES))
    api = apis[backend]
    if api not in rtmidi.get_compiled_api():
        have = [name for name, value in apis.items() if value in rtmidi.get_compiled_api()]
        raise UserError(f"this python-rtmidi was built without the {backend} backend; "
                        f"available: {', '.join(have) or 'none'}")
    return api


def _client(kind: str, backend: str, name: str) -> Any:
    """A MidiIn or MidiOut on `backend`; a missing sequencer or server is one clear line."""
    rtmidi = _rtmidi()
    api = _api(backend)
    cls = rtmidi.MidiIn if kind == "in" else rtmidi.MidiOut
    if backend == "alsa" and not os.path.exists(ALSA_SEQUENCER):
        # Checked first: ALSA would print its own "seq_hw.c ... failed" line before ours.
        raise UserError(f"no ALSA sequencer ({ALSA_SEQUENCER} is missing); try --backend "
                        "jack (with a JACK server running), or load it: sudo modprobe snd-seq")
    try:
        return cls(api, name)
    except rtmidi.RtMidiError as exc:
        if backend == "alsa":
            raise UserError(f"cannot open the ALSA sequencer ({exc}); try --backend jack "
                            "(with a JACK server running)") from exc
        if backend == "jack":
            server = os.environ.get("JACK_DEFAULT_SERVER", "default")
            raise RetryError(f"cannot reach the JACK server {server!r} ({exc}); start one "
                            "(e.g. jackd -d alsa, or qjackctl) or use --backend alsa"
                            ) from exc
        raise RetryError(f"cannot open the {backend} MIDI backend: {exc}") from exc


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 (libjack prints its attempts there) while probing at
    start-up, before any thread that logs exists."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def jack_running() -> bool:
    """Whether a JACK server answers (JACK_DEFAULT_SERVER, else "default"): jack2's socket
    is looked at first; where there is none (PipeWire's JACK) a client tries, quietly."""
    found = _jack_socket()
    if found is not None:
        return _listening(found[0])
    rtmidi = _rtmidi()
    if rtmidi.API_UNIX_JACK not in rtmidi.get_compiled_api():
        return False
    try:
        with _quiet_stderr():
            probe = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "melodyflowd probe")
            probe.get_port_count()          # rtmidi connects to the server lazily
            probe.delete()
    except (rtmidi.RtMidiError, OSError):
        return False
    return True


def choose_backend(requested: str) -> str:
    """The backend to open: `auto` is ALSA where there is a sequencer, else a running JACK
    server (on Linux; the platform's own elsewhere). An explicit choice is checked the same
    way, so either fails in one line before any phrase is generated."""
    if requested == AUTO_BACKEND:
        if sys.platform == "darwin":
            return "coremidi"
        if sys.platform.startswith("win"):
            return "windows"
        if os.path.exists(ALSA_SEQUENCER):
            return "alsa"
        if jack_running():
            return "jack"
        server = os.environ.get("JACK_DEFAULT_SERVER") or "default"
        raise RetryError(f"no MIDI system to open ports on: no ALSA sequencer "
                        f"({ALSA_SEQUENCER} is missing) and no JACK server {server!r} running; "
                        "start JACK (jackd -d alsa, or jackd -d dummy without a sound card; "
                        "qjackctl; PipeWire's JACK) or load the sequencer (sudo modprobe "
                        "snd-seq)")
    _api(requested)
    if requested == "alsa":
        _client("in", "alsa", "melodyflowd probe").delete()
    elif requested == "jack" and not jack_running():
        server = os.environ.get("JACK_DEFAULT_SERVER") or "default"
        raise RetryError(f"cannot reach the JACK server {server!r}; start one (e.g. jackd -d "
                        "alsa, or qjackctl) or use --backend alsa")
    return requested


def _split_name(port: str) -> tuple[str, str]:
    """'client:port' (JACK, ALSA with its ' 128:0' address stripped) -> (client, port)."""
    port = _ALSA_ADDRESS.sub("", port)
    client, sep, rest = port.partition(":")
    return (client, rest) if sep else (port, port)


def _jack_socket() -> tuple[str, int] | None:
    """(path, inode) of the jack2 server socket our clients talk to, if it is there."""
    server = os.environ.get("JACK_DEFAULT_SERVER") or "default"
    uid = os.getuid() if hasattr(os, "getuid") else 0
    for folder in (os.environ.get("JACK_TMPDIR"), "/dev/shm", "/tmp"):
        if folder:
            path = os.path.join(folder, f"jack_{server}_{uid}_0")
            try:
                return path, os.stat(path).st_ino
            except OSError:
                continue
    return None


def _listening(path: str) -> bool:
    """Whether a process listens on the unix socket `path` (Linux: /proc/net/unix; a killed
    server leaves its socket file behind but not its entry there). True when unknown."""
    try:
        with open("/proc/net/unix", encoding="utf-8", errors="replace") as table:
            return any(line.rstrip("\n").endswith(" " + path) for line in table)
    except OSError:
        return True


def list_ports(backend: str) -> tuple[list[str], list[str]]:
    """(inputs, outputs) as the backend names them: ports we can read from / write to.
    `backend` may be "auto" (choose_backend)."""
    backend = choose_backend(backend)
    midi_in = _client("in", backend, "melodyflow ports")
    midi_out = _client("out", backend, "melodyflow ports")
    try:
        return list(midi_in.get_ports()), list(midi_out.get_ports())
    finally:
        midi_in.delete()
        midi_out.delete()


def _taken(name: str, existing: Sequence[str]) -> bool:
    return any(name in _split_name(port) for port in existing)


@dataclass(slots=True)
class Timing:
    """Handling times in nanoseconds (the handler's call, without the sends): a
    preallocated ring the callback writes, the main loop reads (a torn read costs one
    sample, never a lock)."""

    ring: array = field(default_factory=lambda: array("q", bytes(8 * RING_SIZE)))
    count: list[int] = field(default_factory=lambda: [0])     # messages handled, ever
    sent: list[int] = field(default_factory=lambda: [0])      # messages the callback sent
    errors: list[int] = field(default_factory=lambda: [0])    # handler exceptions, ever
    dropped: list[int] = field(default_factory=lambda: [0])   # SysEx not passed on, ever

    def samples(self) -> list[int]:
        n = min(self.count[0], RING_SIZE)
        return sorted(self.ring[:n]) if self.count[0] <= RING_SIZE else sorted(self.ring)

    def percentiles(self) -> dict[str, float]:
        """p50/p99/max of the recent handling times in microseconds ({} before any)."""
        data = self.samples()
        if not data:
            return {}

        def pick(q: float) -> float:
            return data[min(len(data) - 1, int(q * len(data)))] / 1000.0

        return {"p50": pick(0.50), "p99": pick(0.99), "max": data[-1] / 1000.0,
                "n": float(len(data))}


def _make_callback(handler: Handler, send: Callable[[Sequence[int]], None],
                   timing: Timing, sysex: bool = False
                   ) -> Callable[[tuple[list[int], float], object], None]:
    """The rtmidi callback. `sysex`: whether whole SysEx messages go on to the handler."""
    ring, count, errors, sent = timing.ring, timing.count, timing.errors, timing.sent
    dropped = timing.dropped
    clock = time.perf_counter_ns
    seconds = time.perf_counter           # the same clock, as the float the handler takes

    def handle(message: list[int], now: float) -> None:
        start = clock()
        try:
            out = handler(message, now)
            took = clock() - start
            for message in out:
                send(message)
            sent[0] += len(out)
        except Exception:
            errors[0] += 1
            took = clock() - start
        i = count[0]
        ring[i & _RING_MASK] = took
        count[0] = i + 1

    def on_sysex(message: list[int], now: float) -> None:
        if len(message) == 2 and message[1] == 0xF7:        # SYSEX_CLEAR alone: not ours
            return
        for piece in split_messages(message):
            if piece[0] == SYSEX and not sysex_passes(piece, sysex):
                dropped[0] += 1
            else:
                handle(piece, now)

    def on_midi(event: tuple[list[int], float], _data: object = None) -> None:
        message = event[0]
        now = seconds()
        if message and message[0] == SYSEX:
            on_sysex(message, now)
        else:
            handle(message, now)

    return on_midi


class SysexClear:
    """A JACK client of ours whose output is joined to our input port and sends it an empty
    SysEx every SYSEX_CLEAR_SECONDS, from a thread: rtmidi's JACK input, which stops
    delivering after a SysEx without its end byte, then hands over the joined bytes (the
    callback takes them apart) and listens again."""

    def __init__(self, target: str, client_name: str) -> None:
        self._out = _client("out", "jack", client_name)
        ports = list(self._out.get_ports())
        if target not in ports:
            self._out.delete()
            raise RetryError(f"cannot find our own JACK input port {target!r}; ports: "
                             + ", ".join(ports))
        self._out.open_port(ports.index(target), client_name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sysex-clear", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        send = self._out.send_message
        clear = list(SYSEX_CLEAR)
        while not self._stop.wait(SYSEX_CLEAR_SECONDS):
            send(clear)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=1)
        self._out.close_port()
        self._out.delete()


class Ports:
    """An open input/output pair. `close()` stops the callback first, so the main loop
    may then call the engine itself (panic) and `send` what it owes."""

    def __init__(self, settings: Any, handler: Handler) -> None:
        backend = settings.backend
        self.backend = backend
        self.in_name = settings.in_name
        self.out_name = settings.out_name
        self.sysex = bool(getattr(settings, "sysex", False))
        self.timing = Timing()
        self._in: Any = None
        self._out: Any = None
        self._clear: SysexClear | None = None
        self._jack_socket = _jack_socket() if backend == "jack" else None
        try:
            self._open(handler)
        except BaseException:
            self.close()
            raise

    def _open(self, handler: Handler) -> None:
        rtmidi = _rtmidi()
        backend = self.backend
        self._out = _client("out", backend, self.out_name)
        self._in = _client("in", backend, self.in_name)
        if backend == "windows":
            self._open_existing(self._in, self.in_name, "input")
            self._open_existing(self._out, self.out_name, "output")
        else:
            if self.in_name == self.out_name:
                raise UserError(f"input and output ports have the same name {self.in_name!r};"
                                " give --in-name and --out-name different names")
            existing = list(self._in.get_ports()) + list(self._out.get_ports())
            for name, flag in ((self.in_name, "--in-name"), (self.out_name, "--out-name")):
                if _taken(name, existing):
                    raise RetryError(f"MIDI port name {name!r} is already taken on {backend} "
                                    f"(another melodyflowd running?); stop it or pass {flag}")
            try:
                if backend == "jack":
                    self._open_jack()
                else:
                    self._out.open_virtual_port(self.out_name)
                    self._in.open_virtual_port(self.in_name)
            except rtmidi.RtMidiError as exc:
                raise RetryError(f"cannot open virtual MIDI ports on {backend}: {exc}"
                                 ) from exc
        # Clock and SPP must reach the engine, SysEx the callback (see the module's doc);
        # active sensing passes through too.
        self._in.ignore_types(sysex=False, timing=False, active_sense=False)
        self._in.set_callback(_make_callback(handler, self._out.send_message, self.timing,
                                             sysex=self.sysex))
        if backend == "jack":
            self._clear = SysexClear(self.in_full_name, f"melodyflowd {os.getpid()} sysex-clear")

    def _open_jack(self) -> None:
        """Open the two ports under names only this process uses, read the client names
        JACK gave (a second client of the same name becomes 'NAME-01'), then rename the
        ports. Two daemons started at the same instant both pass the check in `_open`; the
        one JACK renamed refuses, naming the port it would have had."""
        marker = f"~{os.getpid()}-{id(self) & 0xFFFF:x}"
        self._out.open_virtual_port(self.out_name + marker)
        self._in.open_virtual_port(self.in_name + marker)
        full: dict[str, str] = {}
        for what, client, name, listing in (("in", self._in, self.in_name,
                                             self._out.get_ports()),
                                            ("out", self._out, self.out_name,
                                             self._in.get_ports())):
            port = next((p for p in listing if p.endswith(":" + name + marker)), None)
            real_client = port.rpartition(":")[0] if port else name
            client.set_port_name(name)
            full[what] = f"{real_client}:{name}"
            if real_client != name:
                flag = "--in-name" if what == "in" else "--out-name"
                raise RetryError(f"MIDI port name {name!r} is already taken on jack (another "
                                f"melodyflowd started at the same moment; JACK named ours "
                                f"{full[what]!r}); stop it or pass {flag}")
        self.in_full_name, self.out_full_name = full["in"], full["out"]

    @staticmethod
    def _open_existing(client: Any, name: str, what: str) -> None:
        ports = list(client.get_ports())
        for index, port in enumerate(ports):
            if port == name or port.startswith(name):
                client.open_port(index)
                return
        raise UserError(f"no MIDI {what} port named {name!r}; existing: "
                        + (", ".join(ports) or "none")
                        + " (on Windows create it with loopMIDI first)")

    def server_gone(self) -> str | None:
        """For JACK: why the server our clients live on is gone (stopped, killed, or
        replaced by a restarted one), else None. rtmidi tells nobody, so the main loop asks
        this about once a second: a stat() of the server's socket, compared with the one at
        open, and whether anyone still listens on it. Other backends, and JACK set-ups
        without that socket (jack1, PipeWire): None."""
        if self._jack_socket is None:
            return None
        path, inode = self._jack_socket
        try:
            now = os.stat(path).st_ino
        except OSError:
            return f"the JACK server stopped ({path} is gone)"
        if now != inode:
            return "the JACK server was restarted (our ports were on the old one)"
        if not _listening(path):
            return f"the JACK server died (nothing listens on {path})"
        return None

    def send(self, message: Sequence[int]) -> None:
        """Send from the main loop (the note-offs owed at shutdown, after stop_input)."""
        if self._out is not None:
            self._out.send_message(list(message))
            self.timing.sent[0] += 1

    def stop_input(self) -> None:
        """Stop calling the handler (the input port stays until close)."""
        if self._clear is not None:
            self._clear.close()
            self._clear = None
        if self._in is not None:
            self._in.cancel_callback()

    def close(self, drain: float = 0.0) -> None:
        """Stop the callback, then close both ports. `drain` seconds let a JACK out port
        flush what was just sent (it is written in the next process cycle)."""
        if self._clear is not None:
            self._clear.close()
            self._clear = None
        if self._in is not None:
            self._in.cancel_callback()
            self._in.close_port()
            self._in.delete()
            self._in = None
        if self._out is not None:
            if drain > 0:
                time.sleep(drain)
            self._out.close_port()
            self._out.delete()
            self._out = None


def open_ports(port_settings: Any, callback: Handler) -> Ports:
    """Open the input and output ports named in `port_settings` (PortSettings) and route
    every incoming message through `callback(message, now)` (the engine's `handle`)."""
    return Ports(port_settings, callback)


class ControlPort:
    """A MIDI output of our own connected to our input port: the live view's buttons send
    the control CCs through it, so they take the very path a controller's CCs take (the
    callback, the engine's control handling) and no other thread touches the engine's
    note memory or writes to the output port. Only the main loop sends here."""

    def __init__(self, settings: Any, name: str) -> None:
        self._out = _client("out", settings.backend, name)
        ports = list(self._out.get_ports())
        for index, port in enumerate(ports):
            if _split_name(port)[0] == settings.in_name or \
                    settings.in_name in _split_name(port):
                try:
                    self._out.open_port(index, "controls")
                except Exception as exc:
                    self.close()
                    raise UserError(f"cannot connect to our own input {port!r}: {exc}"
                                    ) from exc
                return
        self.close()
        raise UserError(f"our input port {settings.in_name!r} is not among "
                        + ", ".join(ports))

    def send(self, message: Sequence[int]) -> None:
        if self._out is not None:
            self._out.send_message(list(message))

    def close(self) -> None:
        if self._out is not None:
            self._out.close_port()
            self._out.delete()
            self._out = None
