"""The generator child process and the client the daemon (and `melodyflow render`) talk to.

The model lives in a child process started with multiprocessing's 'spawn' context, so
its Python work never takes the GIL from the real-time MIDI callback in the parent. The
child lowers its priority (``os.nice``), limits torch to the cores the parent does not
need, loads the model once and then serves requests one by one.

Parent side (``GeneratorClient``), all non-blocking, called from the daemon's main loop::

    client = GeneratorClient(settings)
    client.start()                                    # spawns the child; it loads the model
    rid = client.request(settings.chart, settings.generation)
    ...
    for event in client.poll():                       # Progress / BankReady / Failed /
        ...                                           # ChildDied
    client.stop()

``request`` parses the chart and looks in the on-disk cache (``cache.py``) first: a hit
comes back from the next ``poll()`` as ``BankReady(from_cache=True)`` without the child.
Every request is answered exactly once, by BankReady or Failed (a chart or model error
comes back as Failed with its one-line message), unless cancelled. Without ``start()``,
the first request that misses the cache spawns the child (``melodyflow render`` from
the cache never starts one). If the child dies (killed, out of
memory), ``poll()`` reports ``ChildDied``, starts a new child and sends it the requests
that were not answered; a request on which the child died three times fails.

The pipes carry the dataclasses of messages.py (requests one way, reports the other);
both ends `match` on them. Pipes, not queues: the parent closes its copies of the child's
pipe ends, so a child that dies mid-message gives EOF to the parent instead of a read
that never returns.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import random
import signal
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

from melodyflowd.errors import UserError
from melodyflowd.generate import cache
from melodyflowd.generate.messages import (  # noqa: F401 - the events are worker's API too
    Alive,
    BankPart,
    BankReady,
    Cancel,
    ChildDied,
    Event,
    Failed,
    Generate,
    LogLine,
    Made,
    MadePart,
    ModelLoaded,
    ModelLoading,
    Progress,
    Refused,
    Report,
    Request,
    Started,
    Stop,
    Working,
)
from melodyflowd.generate.model import adapter_for  # model.py imports torch lazily
from melodyflowd.settings import GenerationSettings, Settings

if TYPE_CHECKING:
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.phrases import PhraseBank

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3              # the child may die this many times on one request
CHILD_NICE = 10               # niceness added in the child
_STOP_GRACE = 2.0             # seconds the child gets to leave after "stop"
_PROGRESS_EVERY = 0.1         # seconds between progress messages from the child
HEARTBEAT_SECONDS = 0.5       # the child says Alive this often, whatever it is doing
HEARTBEAT_TIMEOUT = 6.0       # silent this long: stopped (SIGSTOP) or hung, replaced
SPAWN_GRACE = 60.0            # a new child's first word may take this long (a busy machine)




def default_threads() -> int:
    """Torch threads for the child: the cores this process may use, minus one for the
    real-time parent (at least one)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "stopped answering"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"was killed by {name}"
    return f"exited with status {exitcode}"


@dataclass
class _Pending:
    request_id: int
    chart: Chart
    generation: GenerationSettings    # seed always set (picked when the request had none)
    keys: tuple[str, ...]             # cache keys to store the bank under
    attempts: int = 0                 # child deaths while working on it


# -- the parent side ---------------------------------------------------------------------

class GeneratorClient:
    """Owns the generator child process; the daemon calls it from its main loop."""

    def __init__(self, settings: Settings, *, threads: int | None = None,
                 nice: int = CHILD_NICE) -> None:
        self.settings = settings
        self.threads = threads if threads is not None else default_threads()
        self.nice = nice
        self.restarts = 0                 # children started after the first
        self.model_ready = False          # the current child has loaded its model
        self._ctx = multiprocessing.get_context("spawn")
        self._process: Any = None
        self._requests: Connection | None = None   # parent -> child
        self._events: Connection | None = None     # child -> parent
        self._pending: dict[int, _Pending] = {}    # sent to the child, not answered (in order)
        self._current: int | None = None           # the request the child works on
        self._ready: list[Event] = []              # answered in the parent, for the next poll
        self._next_id = 1
        self._started_at = 0.0
        self._heard_at = 0.0                       # the child's last report (any kind)
        self._heard_once = False                   # the current child has said anything
        self._quick_deaths = 0
        self._restart_at: float | None = None
        self._fresh_seeded = 0

    # -- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the child now; it loads the settings' model at once (unless a request is
        already waiting, whose model it loads instead). Idempotent."""
        if self._process is not None:
            return
        self._spawn()

    def _spawn(self) -> None:
        child_reader, parent_writer = self._ctx.Pipe(duplex=False)    # requests
        parent_reader, child_writer = self._ctx.Pipe(duplex=False)    # events
        gen = self.settings.generation
        process = self._ctx.Process(
            target=_child_main, name="melodyflowd-generator", daemon=True,
            args=(child_reader, child_writer, (gen.model, gen.adapter), self.threads,
                  self.nice, log.getEffectiveLevel(), os.getpid()))
        process.start()
        # Our copies of the child's ends: closed, so the child's death reads as EOF here.
        child_reader.close()
        child_writer.close()
        self._process = process
        self._requests = parent_writer
        self._events = parent_reader
        self._started_at = self._heard_at = time.monotonic()
        self._heard_once = False
        self._current = None
        self.model_ready = False
        self._restart_at = None
        for pending in self._pending.values():
            self._send(pending)

    def stop(self) -> None:
        """Ask the child to leave; kill it if it does not within a moment. Idempotent.
        Requests not answered yet are dropped (no events for them)."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError, ValueError):
                self._requests.send(Stop())
            process.join(_STOP_GRACE)
            if process.is_alive():
                process.terminate()
                process.join(1.0)
            if process.is_alive():
                process.kill()
                process.join(1.0)
        for conn in (self._requests, self._events):
            if conn is not None:
                conn.close()
        self._requests = self._events = None
        self._pending.clear()
        self._current = None

    def __enter__(self) -> GeneratorClient:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def pending(self) -> tuple[int, ...]:
        """Request ids the child has not answered yet, oldest first."""
        return tuple(self._pending)

    # -- requests ---------------------------------------------------------------------
    def request(self, chart_path: str, generation: GenerationSettings | None = None, *,
                fresh: bool = False) -> int:
        """Ask for a bank for the chart file; returns the request id. Never raises for a user
        error: a bad chart comes back as Failed from the next poll().

        The cache is used first unless `fresh` (the regenerate control: a new bank, never
        the one playing). With seed None a seed is picked and recorded in the bank; the cache
        then holds it as the latest unseeded bank for these inputs (and under its own seed),
        which is what a restart without a seed plays. With a fixed seed S, the k-th fresh
        request of this client uses seed S + k: new phrases, still reproducible."""
        generation = generation or self.settings.generation
        request_id = self._next_id
        self._next_id += 1
        from melodyflowd.music.sources import load_chart

        tune = self.settings.tune if chart_path == self.settings.chart else None
        try:
            chart = load_chart(chart_path, tune)
        except UserError as exc:
            self._ready.append(Failed(request_id, str(exc)))
            return request_id
        self._submit(request_id, chart, generation, fresh)
        return request_id

    def request_chart(self, chart: Chart, generation: GenerationSettings | None = None, *,
                      fresh: bool = False) -> int:
        """As request(), for a chart already parsed."""
        request_id = self._next_id
        self._next_id += 1
        self._submit(request_id, chart, generation or self.settings.generation, fresh)
        return request_id

    def _submit(self, request_id: int, chart: Chart, generation: GenerationSettings,
                fresh: bool) -> None:
        cache_dir = generation.cache_dir
        keys: list[str] = []
        try:
            keys.append(cache.cache_key(chart, generation))
        except Exception as exc:  # noqa: BLE001 - a cache that cannot key never stops us
            log.warning("bank cache unavailable: %s", exc)
        if not fresh and keys:
            bank = cache.load_cached(cache_dir, keys[0], bars=len(chart.bars),
                                     variations=generation.variations, seed=generation.seed,
                                     generation=generation)
            if bank is not None:
                log.info("bank from cache (%s)", cache.cache_path(cache_dir, keys[0]).name)
                self._ready.append(BankReady(request_id, bank, from_cache=True))
                return
        if generation.seed is None:
            generation = dataclasses.replace(generation,
                                             seed=random.SystemRandom().randrange(2**31))
            with contextlib.suppress(Exception):
                keys.append(cache.cache_key(chart, generation))
        elif fresh:
            # A fixed seed would give the same bank again: the k-th fresh request uses
            # seed + k (so a session with --seed 7 is still reproducible: 7, 8, 9, ...).
            self._fresh_seeded += 1
            generation = dataclasses.replace(
                generation, seed=(generation.seed + self._fresh_seeded) % 2**63)
            keys = []
            with contextlib.suppress(Exception):
                keys.append(cache.cache_key(chart, generation))
        pending = _Pending(request_id, chart, generation, tuple(keys))
        self._pending[request_id] = pending
        if self._process is None:
            self._spawn()
        elif self._restart_at is None:
            self._send(pending)

    def cancel(self, request_id: int) -> None:
        """Forget a request: no event comes for it (the child skips it if not yet begun)."""
        if self._pending.pop(request_id, None) is not None:
            with contextlib.suppress(OSError, ValueError, AttributeError):
                self._requests.send(Cancel(request_id))

    def _send(self, pending: _Pending) -> None:
        # If the child is gone, poll() restarts it and sends again.
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._requests.send(Generate(pending.request_id, pending.chart,
                                         pending.generation, pending.keys))

    # -- events -----------------------------------------------------------------------
    def poll(self) -> list[Event]:
        """Events since the last call (never blocks). Restarts a child that died."""
        out, self._ready = self._ready, []
        if self._process is None:
            return out
        if self._restart_at is not None:
            if time.monotonic() >= self._restart_at:
                self._spawn()
            return out
        exited = not self._process.is_alive()     # read what it sent before it died, then act
        broken = False
        try:
            while self._events.poll(0):
                report = self._events.recv()
                self._heard_at = time.monotonic()
                self._heard_once = True
                self._handle(report, out)
        except (EOFError, OSError):
            broken = True
        except Exception as exc:  # noqa: BLE001 - a garbled message: treat the child as lost
            log.error("generator process sent an unreadable message: %s", exc)
            broken = True
        silent = time.monotonic() - self._heard_at
        if not (exited or broken) and silent > (HEARTBEAT_TIMEOUT if self._heard_once
                                                else SPAWN_GRACE):
            # Stopped (SIGSTOP), or hung: it will not answer. SIGKILL ends a stopped
            # process too; then it is replaced like one that died.
            self._process.kill()
            self._child_lost(out, f"did not answer for {silent:.0f} s (stopped or hung); "
                                  "killed it")
            return out
        if exited or broken:
            self._child_lost(out)
        return out

    def _handle(self, report: Report, out: list[Event]) -> None:
        match report:
            case LogLine(level, logger, text):
                logging.getLogger(logger).log(level, "%s", text)
            case ModelLoading(text):
                self.model_ready = False
                out.append(Progress(self._current or self._oldest(), 0, 0, text))
            case ModelLoaded(text):
                self.model_ready = True
                self._quick_deaths = 0
                log.info("generator: %s", text)
            case Started(request_id):
                self._current = request_id
            case Working(request_id, done, total, text):
                if request_id in self._pending:
                    out.append(Progress(request_id, done, total, text))
            case Made(request_id, bank):
                self._current = None
                if self._pending.pop(request_id, None) is not None:
                    out.append(BankReady(request_id, bank, from_cache=False))
            case MadePart(request_id, bank, bars_done):
                if request_id in self._pending:
                    out.append(BankPart(request_id, bank, bars_done))
            case Refused(request_id, text, retry):
                self._current = None
                if self._pending.pop(request_id, None) is not None:
                    out.append(Failed(request_id, text, retry=retry))
            case Alive():
                pass
            case _:
                log.error("generator process sent an unknown message %r", report)

    def _oldest(self) -> int:
        return next(iter(self._pending), 0)

    def _child_lost(self, out: list[Event], why: str | None = None) -> None:
        process = self._process
        if process.is_alive():          # its pipe broke but it runs: it cannot be trusted
            process.kill()
        process.join(1.0)
        exitcode = process.exitcode
        for conn in (self._requests, self._events):
            with contextlib.suppress(OSError):
                conn.close()
        lived = time.monotonic() - self._started_at
        blamed = self._current if self._current in self._pending else self._oldest()
        message = f"generator process (pid {process.pid}) {why or _describe_exit(exitcode)}"
        if blamed:
            pending = self._pending[blamed]
            pending.attempts += 1
            if pending.attempts >= MAX_ATTEMPTS:
                del self._pending[blamed]
                out.append(Failed(blamed, f"the generator process was lost "
                                  f"{pending.attempts} times while writing this bank (the "
                                  f"last: {message}); giving up on it", retry=True))
        self.restarts += 1
        self._quick_deaths = self._quick_deaths + 1 if lived < 5.0 else 0
        delay = 0.0 if self._quick_deaths <= 1 else min(30.0, 0.5 * 2 ** self._quick_deaths)
        out.append(ChildDied(exitcode, f"{message}; starting a new one"
                             + (f" in {delay:.0f} s" if delay else "")))
        for request_id in self._pending:
            out.append(Progress(request_id, 0, 0, "restarting generator"))
        self._current = None
        self.model_ready = False
        if delay:
            self._restart_at = time.monotonic() + delay
        else:
            self._spawn()


# -- the child side ----------------------------------------------------------------------

class _PipeLogHandler(logging.Handler):
    """Child log records travel to the parent, which logs them with its own handlers."""

    def __init__(self, events: Connection) -> None:
        super().__init__()
        self.events = events

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):
            self.events.send(LogLine(record.levelno, record.name, record.getMessage()))


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    raise SystemExit(0)


def _child_main(requests: Connection, events: Connection,
                preload: tuple[str | None, str | None], threads: int, nice: int,
                log_level: int, parent_pid: int) -> None:
    """Entry point of the generator process (spawned: a fresh interpreter)."""
    # The parent decides when we stop: Ctrl-C in a terminal, a reload (HUP) or a regenerate
    # (USR1) sent to the whole process group are the daemon's, not ours.
    for name in ("SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    # A SIGTERM to the whole group (e.g. `timeout`, `kill -- -PGID`): leave through the
    # interpreter's exit, which releases what torch's imports hold, instead of dying raw.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    with contextlib.suppress(OSError, AttributeError):
        os.nice(nice)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")   # no bars on the daemon's log
    events = _LockedSender(events)       # the heartbeat thread sends on it too
    heartbeat = threading.Thread(target=_heartbeat, args=(events,), name="heartbeat",
                                 daemon=True)
    heartbeat.start()
    handler = _PipeLogHandler(events)
    ours = logging.getLogger("melodyflowd")
    ours.addHandler(handler)
    ours.setLevel(log_level)
    ours.propagate = False
    with contextlib.suppress(_ParentGone, BrokenPipeError, ConnectionError, EOFError):
        _Child(requests, events, threads, parent_pid).run(preload)


class _LockedSender:
    """A Connection's send for two threads (a Connection is not safe for that)."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self._lock = threading.Lock()

    def send(self, report: Report) -> None:
        with self._lock:
            self._connection.send(report)


def _heartbeat(events: _LockedSender) -> None:
    """Alive every HEARTBEAT_SECONDS while the process runs (model loading and generation
    leave the GIL often enough); when the process is stopped, so is this."""
    with contextlib.suppress(OSError, ValueError, BrokenPipeError):
        while True:
            events.send(Alive())
            time.sleep(HEARTBEAT_SECONDS)


class _ParentGone(Exception):
    """The daemon is gone: stop working for it."""


class _Child:
    def __init__(self, requests: Connection, events: Connection, threads: int,
                 parent_pid: int) -> None:
        self.parent_pid = parent_pid
        self.requests = requests
        self.events = events
        self.threads = threads
        self.loaded: Any = None
        self.loaded_key: tuple[str | None, str | None] | None = None
        self.load_error: str | None = None
        self.load_retry = False                   # the load failed, not for a user's reason
        self.queue: deque[Request] = deque()
        self.cancelled: set[int] = set()

    def run(self, preload: tuple[str | None, str | None]) -> None:
        import torch

        torch.set_num_threads(self.threads)
        with contextlib.suppress(RuntimeError):       # only allowed before any parallel work
            torch.set_num_interop_threads(1)
        self.drain()
        if not any(isinstance(m, Generate) for m in self.queue):  # a request waits: its model
            self.ensure_model(*preload)
        while True:
            if not self.queue:
                try:
                    self.queue.append(self.requests.recv())
                except (EOFError, OSError):
                    return                            # the parent is gone
            self.drain()
            match self.queue.popleft():
                case Stop():
                    return
                case Cancel(request_id):
                    self.cancelled.add(request_id)
                case Generate(request_id) if request_id in self.cancelled:
                    self.cancelled.discard(request_id)
                case Generate(request_id, chart, generation, keys):
                    self.generate(request_id, chart, generation, keys)

    def drain(self) -> None:
        """Read what else is waiting, so cancels and stop are seen before old work."""
        with contextlib.suppress(EOFError, OSError):
            while self.requests.poll(0):
                self.queue.append(self.requests.recv())
        if any(isinstance(m, Stop) for m in self.queue):
            self.queue = deque([Stop()])
            return
        for message in list(self.queue):
            match message:
                case Cancel(request_id):
                    self.cancelled.add(request_id)
                    self.queue.remove(message)

    def ensure_model(self, model: str | None, adapter: str | None) -> None:
        if self.loaded_key == (model, adapter):
            return
        self.loaded = None                            # free the old one first
        self.load_error = None
        self.load_retry = False
        self.loaded_key = (model, adapter)
        name = model or "default"
        self.events.send(ModelLoading(f"loading model {name}"
                                      + (f" with adapter {adapter}" if adapter else "")))
        from melodyflowd.generate.model import load_model

        started = time.perf_counter()
        try:
            self.loaded = load_model(model, adapter)
        except UserError as exc:
            # Not logged here: the message goes back as Failed, and whoever asked reports
            # it (the CLI prints it once, as its one line).
            self.load_error = str(exc)
            return
        except Exception as exc:  # noqa: BLE001 - reported, the child keeps serving
            self.load_error = f"cannot load model {name}: {type(exc).__name__}: {exc}"
            self.load_retry = True
            logging.getLogger(__name__).error("%s\n%s", self.load_error, traceback.format_exc())
            return
        from melodyflowd.generate.compose import USE_FAST_FORWARD

        fast = self.loaded.fast_forward if USE_FAST_FORWARD else None
        # the compiled loops load (or compile, once a machine) here, before the first bank
        how = fast.describe() if fast is not None else "transformers' forward"
        self.events.send(ModelLoaded(f"model {name} loaded in "
                                     f"{time.perf_counter() - started:.1f} s; decoding: {how}"))

    def generate(self, request_id: int, chart: Chart, generation: GenerationSettings,
                 keys: tuple[str, ...]) -> None:
        self.events.send(Started(request_id))
        adapter = adapter_for(generation.model, generation.adapter, chart.style)
        self.ensure_model(generation.model, adapter)
        if self.loaded is None:
            self.events.send(Refused(request_id, self.load_error or "model not loaded",
                                     retry=self.load_retry))
            return
        last = [0.0]

        def progress(done: int, total: int) -> None:
            if os.getppid() != self.parent_pid:
                raise _ParentGone
            now = time.monotonic()
            if done >= total or now - last[0] >= _PROGRESS_EVERY:
                last[0] = now
                self.events.send(Working(request_id, done, total, "generating"))

        def partial(bank: PhraseBank) -> None:
            done = sum(1 for phrase in bank.variations[0] if phrase.notes) if \
                bank.variations else 0
            self.events.send(MadePart(request_id, bank, done))

        try:
            from melodyflowd.generate.compose import compose_bank

            bank = compose_bank(chart, self.loaded, generation, progress, partial)
        except (_ParentGone, BrokenPipeError, ConnectionError):
            raise
        except UserError as exc:
            self.events.send(Refused(request_id, str(exc)))
            return
        except Exception as exc:  # noqa: BLE001 - a bug: one line to the caller, trace to log
            logging.getLogger(__name__).error("generation failed:\n%s", traceback.format_exc())
            first = str(exc).splitlines()[0] if str(exc) else ""
            self.events.send(Refused(request_id,
                                     f"generation failed: {type(exc).__name__}: {first}",
                                     retry=True))
            return
        for key in keys:
            cache.store(generation.cache_dir, key, bank)
        self.events.send(Made(request_id, bank))
