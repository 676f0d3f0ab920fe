"""The daemon's lifecycle: load the chart, get a phrase bank, open the ports, serve, stop.

Thin shell around the pure engine. The threads:
- the MIDI callback (ports.py) calls `engine.handle` and sends; nothing else;
- the main loop here: signals, the generator child's events, bank swaps (`engine.offer`,
  which takes effect at the next bar line), the systemd watchdog and the stats line; and
  the housework the callback must never pay for: garbage collection (automatic
  collections are off while serving, `collect_garbage` runs them) and freeing the banks a
  swap replaced (`engine.release_retired`);
- with --view, the live view's server thread (service/view.py): it pushes what the main
  loop publishes each turn and queues the page's actions, which the loop drains.

Signals only set flags; the main loop acts on them between two sleeps:
  SIGHUP           reread config and chart, regenerate, swap at the next bar line; changed
                   engine settings and connect patterns apply at once, other port
                   settings at the next start; an invalid chart or config is logged
                   and the old one keeps playing
  SIGUSR1          regenerate (a new bank for the same chart; with --phrases: reread it)
  SIGTERM, SIGINT  stop the callback, send the note-offs owed (engine.panic), close the
                   ports, exit 0

Exit status (errors.py): 0 after SIGTERM/SIGINT; 2 for the user's file or setting (chart,
bank, config, model; raised as UserError to the CLI); 1 for everything else, which a retry
may fix (RetryError: JACK unreachable, port names held; the JACK server under the ports
went away or restarted; the main loop failed ten turns in a row). A generator child that
dies is restarted by the GeneratorClient while the current bank keeps playing.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from types import FrameType
from typing import Any

from melodyflowd.errors import RetryError, UserError
from melodyflowd.generate.messages import BankPart, BankReady, ChildDied, Event, Failed, Progress
from melodyflowd.service import sdnotify

log = logging.getLogger("melodyflowd")

LOOP_SECONDS = 0.02            # main-loop tick: signal and generator latency, not MIDI
GIL_SWITCH_SECONDS = 0.0005    # how long a busy main thread may keep the callback waiting
SERVER_CHECK_SECONDS = 1.0     # how often to look whether the JACK server is still ours
CONNECT_SECONDS = 1.0          # how often to look for new ports to connect (connect_in/out)
GC_YOUNG = 700                 # collect (in the main loop) once this many objects are new
GC_OLDER = 10                  # ... and an older generation after this many of the younger


def collect_garbage() -> int | None:
    """The cyclic garbage collector's work, done here in the main loop instead of wherever
    an allocation happens to cross a threshold (the MIDI callback too: with gc enabled, a
    note could pay for a collection the main loop's allocations ran up). The same rule as
    gc's own (gc.set_threshold defaults): generation 0 past GC_YOUNG new objects, 1 and
    2 every GC_OLDER of the one below. Returns the generation collected, or None."""
    young, older, oldest = gc.get_count()
    if young < GC_YOUNG:
        return None
    generation = 2 if oldest >= GC_OLDER and older >= GC_OLDER else 1 if older >= GC_OLDER \
        else 0
    gc.collect(generation)
    return generation


def stderr_is_journal() -> bool:
    """Whether stderr goes to systemd's journal: JOURNAL_STREAM names its "device:inode",
    and it must be our fd 2 (a child of a service may inherit the variable but write
    elsewhere)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        info = os.fstat(sys.stderr.fileno())
        return (int(device), int(inode)) == (info.st_dev, info.st_ino)
    except (ValueError, OSError, AttributeError):
        return False


def setup_logging(level: str) -> None:
    """Lines on stderr: with the time on a terminal or in a file; without it in the journal,
    which adds the time and the unit itself."""
    handler = logging.StreamHandler(sys.stderr)
    if stderr_is_journal():
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s.%(msecs)03d %(levelname)s %(message)s", datefmt="%Y-%m-%d %H:%M:%S"))
    root = logging.getLogger("melodyflowd")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(getattr(logging, str(level).upper(), logging.INFO))


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class Flags:
    """Set by signal handlers (main thread, between bytecodes), cleared by the loop."""

    stop: str | None = None
    reload: bool = False
    regenerate: bool = False


@dataclass
class Pending:
    request_id: int
    chart: Any
    reason: str
    started: float = field(default_factory=time.monotonic)


class Daemon:
    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.flags = Flags()
        self.chart: Any = None
        self.engine: Any = None
        self.ports: Any = None
        self.connector: Any = None
        self.requested_ports = settings.ports      # before `auto` became a backend
        self.generator: Any = None
        self.pending: Pending | None = None
        self.follow_charts: tuple = ()        # follow mode: the charts its lines are written on
        self.follow_banks: dict[int, Any] = {}   # [index in follow_charts] -> its bank
        self.queue: list[tuple[Any, str, bool]] = []   # requests after the pending one
        self.bank_since = time.monotonic()
        self.bank_source = ""
        self.regenerate_seen = 0
        self.bank_partial = False       # playing the first bars of a long chart's bank
        self.variation_seen = 0
        self._last_progress: tuple | None = None
        self.progress = ""                  # the last progress line of the generator
        self.view: Any = None               # the live view (service/view.py), when asked for

    # -- signals -----------------------------------------------------------------------
    def install_signals(self) -> None:
        def on_stop(signum: int, _frame: FrameType | None) -> None:
            self.flags.stop = signal.Signals(signum).name

        def on_hup(_signum: int, _frame: FrameType | None) -> None:
            self.flags.reload = True

        def on_usr1(_signum: int, _frame: FrameType | None) -> None:
            self.flags.regenerate = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, on_hup)
        if hasattr(signal, "SIGUSR1"):
            signal.signal(signal.SIGUSR1, on_usr1)

    # -- banks -------------------------------------------------------------------------
    def _load_bank_file(self, chart: Any) -> Any:
        from melodyflowd.music.phrases import check_bank_for_chart, check_bank_pitches, load_bank

        path = self.settings.phrases
        bank = load_bank(path)
        check_bank_for_chart(bank, chart, source=path)
        check_bank_pitches(bank, source=path)
        return bank

    def _request(self, chart: Any, reason: str, fresh: bool = True) -> None:
        """Ask the child for a bank. `fresh`: a new bank, not the cached one (regenerate).
        Supersedes the pending request; the queue is the caller's."""
        request_id = self.generator.request_chart(chart, self.settings.generation, fresh=fresh)
        if self.pending is not None:
            self.generator.cancel(self.pending.request_id)
            log.info("generation %d superseded by %d (%s)", self.pending.request_id,
                     request_id, reason)
        self.pending = Pending(request_id, chart, reason)
        self._last_progress = None
        sdnotify.status(f"generating phrases ({reason})")

    def _pregenerate(self, chart: Any, reason: str = "start-up") -> Any | None:
        """Block (still answering signals) until the generator delivers the first bank."""
        from melodyflowd.generate.worker import GeneratorClient

        if self.generator is None:
            self.generator = GeneratorClient(self.settings)
            self.generator.start()
        log.info("generating phrases for %s (%d bars, %d variations)...",
                 _chart_name(self.settings.chart, chart), len(chart.bars),
                 self.settings.generation.variations)
        self._request(chart, reason, fresh=False)
        while self.flags.stop is None:
            for event in self.generator.poll():
                bank = self._on_generator_event(event, first=True)
                if bank is not None:
                    return bank
            self._watchdog()
            self._view_turn()
            time.sleep(LOOP_SECONDS)
        return None

    def _on_generator_event(self, event: Event, first: bool = False) -> Any | None:
        """React to one event of the generator; returns the bank when `first` and it came."""
        match event:
            case ChildDied():                         # about the process, not a request
                log.warning("%s; %s", event.message, "the current bank keeps playing"
                            if self.engine is not None else "still waiting for the first bank")
            case Progress():
                if self._is_current(event.request_id) or event.request_id == 0:
                    self._progress(event)
            case Failed() if not self._is_current(event.request_id):
                log.warning("generator: an old request failed: %s", event.message)
            case Failed():
                reason = self.pending.reason
                self.pending = None
                if first:
                    error = RetryError if event.retry else UserError
                    raise error(f"phrase generation failed: {event.message}")
                log.error("generation failed (%s): %s; the current bank keeps playing",
                          reason, event.message)
                sdnotify.status("playing; the last generation failed")
            case BankPart() if not self._is_current(event.request_id):
                pass
            case BankPart() if first or self.bank_partial:
                # A long chart: its first bars play while the rest is written.
                log.info("phrase bank: bars 1-%d of %d ready, playing them; the rest follows"
                         " (%s)", event.bars_done, len(event.bank.bars), self.pending.reason)
                self.bank_partial = True
                if first:
                    self.bank_source = "generated, in part"
                    return event.bank
                self._offer(event.bank, self.pending.chart, "generated, in part")
            case BankPart():
                pass                      # a new bank for what plays whole: only when whole
            case BankReady() if not self._is_current(event.request_id):
                log.info("generator: dropping the bank of superseded request %d",
                         event.request_id)
            case BankReady():
                pending, self.pending = self.pending, None
                took = time.monotonic() - pending.started
                log.info("phrase bank %s in %.1f s%s (%s)",
                         "complete" if self.bank_partial else "ready", took,
                         " from the cache" if event.from_cache else "", pending.reason)
                self.bank_partial = False
                if first:
                    self.bank_source = "generated"
                    return event.bank
                self._offer(event.bank, pending.chart, "generated")
            case _:
                log.warning("generator: unknown event %r", event)
        return None

    def _is_current(self, request_id: int) -> bool:
        return self.pending is not None and request_id == self.pending.request_id

    def _progress(self, event: Any) -> None:
        """Progress lines on stderr (every tenth of the way) and as the systemd STATUS."""
        done, total, message = int(event.done), int(event.total), str(event.message or "")
        if total <= 0:                                    # loading the model, restarting
            key: tuple = (message,)
            text = message or "working"
        else:
            key = (message, (10 * done) // total, done >= total)
            text = f"{message or 'generating'} {done}/{total}"
        if key == self._last_progress:
            return
        self._last_progress = key
        self.progress = text
        log.info("generator: %s", text)
        sdnotify.status(f"phrases: {text}")

    def _next_queued(self) -> None:
        """Nothing pending: ask for the next bank in the queue (follow mode's lines after
        the chart's, the later scales after the first)."""
        if self.pending is None and self.queue and self.generator is not None:
            chart, reason, fresh = self.queue.pop(0)
            self._request(chart, reason, fresh)

    def _follow_index(self, chart: Any) -> int:
        return next((i for i, c in enumerate(self.follow_charts) if c is chart), -1)

    def _offer_follow(self) -> None:
        """The follow tables from the follow banks there are, for the chart's key."""
        from melodyflowd.live.follow import build_follow, line_floor

        banks = self.follow_banks
        if 0 not in banks:
            return
        more = [(banks[i], c) for i, c in enumerate(self.follow_charts) if i and i in banks]
        self.engine.offer_follow(build_follow(banks[0], self.follow_charts[0], self.chart.key,
                                              more=more,
                                              floor=line_floor(self.settings.engine)))

    def _offer(self, bank: Any, chart: Any, source: str) -> None:
        index = self._follow_index(chart) if chart is not None else -1
        if index >= 0:
            self.follow_banks[index] = bank
            self._offer_follow()
            if chart is not self.chart:       # the follow lines of a chart: nothing else
                log.info("new follow lines (%s, %s)", source,
                         "the first scales" if index == 0 else "the other scales")
                return
        same_chart = chart is None or chart is self.chart
        self.engine.offer(bank, None if same_chart else chart, now=time.perf_counter())
        if not same_chart:
            self.chart = chart
            self._offer_follow()              # the recognizer reads chords in the new key
        self.bank_since = time.monotonic()
        self.bank_source = source
        log.info("new phrase bank (%s, %d variations) swaps in at the next bar line",
                 source, bank.n_variations)
        sdnotify.status(self._status())

    # -- actions of the main loop ---------------------------------------------------------
    def _follow_queue(self, chart: Any, reason: str, fresh: bool) -> list:
        """Follow mode: the follow lines to ask for after `chart`'s bank, in order."""
        return [(c, f"follow lines ({reason})", fresh) for c in self.follow_charts
                if c is not chart]

    def regenerate(self, reason: str, chart: Any = None, fresh_follow: bool = True) -> None:
        """A new bank for the chart and, in follow mode, new follow lines after it (a
        musician asking for new phrases wants new lines over the chords played too).
        `fresh_follow` False: the follow lines as they are (from the cache), rebuilt for
        the chart's key (SIGHUP)."""
        chart = chart if chart is not None else self.chart
        follow_queue = self._follow_queue(chart, reason, fresh_follow)
        if self.generator is None and not self.settings.phrases:
            # The config (SIGHUP) switched from a saved bank to generating.
            from melodyflowd.generate.worker import GeneratorClient

            self.generator = GeneratorClient(self.settings)
            self.generator.start()
        if self.generator is not None and not self.settings.phrases:
            log.info("regenerating (%s)", reason)
            self._request(chart, reason)
            self.queue = follow_queue
            return
        # Playing a saved bank: "regenerate" rereads the file (it may have been re-rendered).
        try:
            bank = self._load_bank_file(chart)
        except UserError as exc:
            log.error("cannot reload the phrase bank (%s): %s; the current one keeps playing",
                      reason, exc)
            return
        log.info("rereading %s (%s; saved bank, no generator)", self.settings.phrases, reason)
        self._offer(bank, chart, f"file {self.settings.phrases}")
        if follow_queue and self.generator is not None:
            self.queue = follow_queue[1:]
            self._request(*follow_queue[0])

    def reload(self) -> None:
        """SIGHUP: config, then chart; either invalid -> logged, the old keeps playing."""
        log.info("SIGHUP: reloading")
        sdnotify.reloading()
        try:
            self._reload()
        finally:
            sdnotify.ready(self._status())

    def _reload(self) -> None:
        from melodyflowd.music.sources import load_chart
        from melodyflowd.service.config import reload_settings

        try:
            settings = reload_settings(self.settings)
        except UserError as exc:
            log.error("config reload failed: %s; keeping the running config", exc)
            settings = self.settings
        try:
            chart = load_chart(settings.chart, settings.tune) if settings.chart else self.chart
        except UserError as exc:
            log.error("chart reload failed: %s; the old chart keeps playing", exc)
            return
        except OSError as exc:
            log.error("chart reload failed: %s: %s; the old chart keeps playing",
                      settings.chart, exc.strerror or exc)
            return
        ports = self._reload_connections(settings.ports)
        if settings.view != self.settings.view:
            log.warning("view settings changed: they take effect at the next restart")
        engine_changed = settings.engine != self.settings.engine
        if engine_changed:
            self.engine.update_settings(settings.engine)      # live from the next message
            log.info("engine settings updated")
        self.settings = replace(settings, ports=ports, view=self.settings.view)
        logging.getLogger("melodyflowd").setLevel(
            getattr(logging, str(self.settings.log_level).upper(), logging.INFO))
        if engine_changed and self.follow_banks:
            self._offer_follow()              # the split (where lines sit) may have moved
        self.regenerate("SIGHUP", chart, fresh_follow=False)

    def _watchdog(self) -> None:
        if self._watchdog_every is None:
            return
        now = time.monotonic()
        if now >= self._watchdog_next:
            sdnotify.watchdog()
            self._watchdog_next = now + self._watchdog_every

    def stats_line(self) -> str:
        engine = self.engine
        timing = self.ports.timing if self.ports is not None else None
        pct = timing.percentiles() if timing is not None else {}
        handling = ("handling p50 {p50:.1f} us p99 {p99:.1f} us max {max:.1f} us (n={n:.0f})"
                    .format(**pct) if pct else "handling: no messages yet")
        return (f"stats: notes remapped {engine.notes_remapped}, "
                f"messages {timing.count[0] if timing else 0}, "
                f"sent {timing.sent[0] if timing else 0}, {handling}, "
                f"dropped {engine.dropped}, engine errors {engine.errors}, "
                f"callback errors {timing.errors[0] if timing else 0}, "
                f"sysex dropped {timing.dropped[0] if timing else 0}, "
                f"bank swaps {engine.swaps}, "
                f"bank age {_age(time.monotonic() - self.bank_since)} ({self.bank_source}), "
                f"variation {engine.variation + 1}/{engine.bank.n_variations}")

    def _status(self) -> str:
        title = self.chart.title or self.settings.chart
        remapped = self.engine.notes_remapped if self.engine is not None else 0
        return f"playing {title}; {remapped} notes remapped"

    # -- lifecycle -----------------------------------------------------------------------
    def run(self) -> int:
        from melodyflowd.live.connect import check_connect_backend, open_connector
        from melodyflowd.live.engine import Engine
        from melodyflowd.live.ports import choose_backend, open_ports
        from melodyflowd.live.transport import Transport
        from melodyflowd.music.sources import load_chart

        settings = self.settings
        setup_logging(settings.log_level)
        sys.setswitchinterval(GIL_SWITCH_SECONDS)
        self.install_signals()
        timeout = sdnotify.watchdog_timeout()
        self._watchdog_every = timeout / 3 if timeout else None
        self._watchdog_next = 0.0

        follow = settings.engine.follow
        chart = load_chart(settings.chart, settings.tune) if settings.chart else None
        if follow:
            from melodyflowd.music.follow import follow_charts

            self.follow_charts = follow_charts(style=chart.style if chart is not None else None)
        self.chart = chart if chart is not None else self.follow_charts[0]
        bank = None
        if settings.phrases:        # the user's files first: their errors, whatever MIDI has
            bank = self._load_bank_file(self.chart)
            self.bank_source = f"file {settings.phrases}"
        try:
            if settings.view.port is not None:
                from melodyflowd.service.view import DaemonView

                self.view = DaemonView(settings.view)
                self.view.start()
            # The MIDI system is chosen (and its absence reported) before any generation.
            backend = choose_backend(settings.ports.backend)
            if backend != settings.ports.backend:
                log.info("MIDI backend: %s (%s)", backend, settings.ports.backend)
                settings = self.settings = replace(
                    settings, ports=replace(settings.ports, backend=backend))
            check_connect_backend(settings.ports)
            if bank is None:
                bank = self._pregenerate(self.chart)
                if bank is None:
                    log.info("stopped (%s) before the first bank was ready", self.flags.stop)
                    return 0
            lines = bank if follow and self.chart is self.follow_charts[0] else None
            if follow and lines is None:
                lines = self._pregenerate(self.follow_charts[0], "follow lines")
                if lines is None:
                    log.info("stopped (%s) before the follow lines were ready",
                             self.flags.stop)
                    return 0
            self.bank_since = time.monotonic()
            transport = Transport(self.chart.tempo, self.chart.beats_per_bar)
            self.engine = Engine(settings.engine, self.chart, bank, transport)
            if follow:
                self.follow_banks[0] = lines
                self._offer_follow()
                # The other scales next, in the background (until they come, those chords
                # play the nearest written scale's lines).
                self.queue = self._follow_queue(self.follow_charts[0], "start-up", False)
                log.info("following the chords played (%s)",
                         f"channel {settings.engine.chord_channel + 1}"
                         if settings.engine.chord_channel is not None else
                         f"keys below {self.engine.follow_split}")
            self.regenerate_seen = self.engine.regenerate_requests
            # What start-up made lives as long as we do: out of the collector's sight, so
            # a full collection walks only what came later. And no automatic collections
            # from here on: they run in whichever thread allocates, the MIDI callback too;
            # the main loop runs them instead (collect_garbage).
            gc.collect()
            gc.freeze()
            gc.disable()
            self.ports = open_ports(settings.ports, self.engine.handle)
            if self.view is not None:
                self.view.attach(settings.ports)
            log.info("ready: %r -> %r on %s; %d bars, %d variations", settings.ports.in_name,
                     settings.ports.out_name, settings.ports.backend, len(self.chart.bars),
                     bank.n_variations)
            self.connector = open_connector(settings.ports)
            self._connect_ports()
            sdnotify.ready(self._status())
            self._next_queued()
            return self.serve()
        finally:
            self.shutdown()

    def serve(self) -> int:
        """The live loop: until a stop signal (exit 0) or a lost JACK server (exit 1). A bug
        in one turn is logged and the music plays on (the callback does not depend on this
        loop); ten turns in a row that fail end the daemon with status 1."""
        interval = float(self.settings.stats_interval or 0)
        self._next_stats = time.monotonic() + interval if interval > 0 else None
        self._next_server_check = time.monotonic() + SERVER_CHECK_SECONDS
        self._next_connect = time.monotonic() + CONNECT_SECONDS
        failures = 0
        while self.flags.stop is None:
            try:
                status = self._turn(interval)
                failures = 0
            except Exception:
                failures += 1
                log.exception("internal error in the main loop (%d in a row); the current "
                              "bank keeps playing", failures)
                if failures >= 10:
                    return 1
                time.sleep(1.0)
                continue
            if status is not None:
                return status
            time.sleep(LOOP_SECONDS)
        log.info("%s: stopping", self.flags.stop)
        return 0

    def _turn(self, interval: float) -> int | None:
        now = time.monotonic()
        if now >= self._next_server_check:
            self._next_server_check = now + SERVER_CHECK_SECONDS
            gone = self.ports.server_gone()
            if gone is not None:
                log.error("%s; exiting with status 1 so that the service manager "
                          "restarts melodyflowd on the new server", gone)
                return 1
        if self.connector is not None and now >= self._next_connect:
            self._next_connect = now + CONNECT_SECONDS
            self._connect_ports()
        if self.flags.reload:
            self.flags.reload = False
            self.reload()
        if self.flags.regenerate:
            self.flags.regenerate = False
            self.regenerate("SIGUSR1")
        requests = self.engine.regenerate_requests
        if requests != self.regenerate_seen:
            self.regenerate_seen = requests
            self.regenerate("control CC")
        self._log_variation()
        if self.generator is not None:
            for event in self.generator.poll():
                self._on_generator_event(event)
            self._next_queued()
        self.engine.release_retired()       # old banks are freed here, not in the callback
        self._view_turn()
        collect_garbage()
        self._watchdog()
        if self._next_stats is not None and time.monotonic() >= self._next_stats:
            log.info("%s", self.stats_line())
            self._next_stats = time.monotonic() + interval
        return None

    def _log_variation(self) -> None:
        """A variation chosen by a control CC (or the view) is logged here, not in the
        callback that made the change."""
        variation = self.engine.variation
        if variation != self.variation_seen:
            self.variation_seen = variation
            log.info("variation %d/%d", variation + 1, self.engine.bank.n_variations)

    def _view_turn(self) -> None:
        """The live view's turn: publish this turn's state, do what its buttons asked."""
        if self.view is None:
            return
        for action in self.view.turn(self):
            log.info("view: %s", action)
            if action == "regenerate":
                self.regenerate("view")
            elif self.engine is not None and not self.view.send_control(
                    self.engine.settings.controls, action):
                log.warning("view: %s is off (engine.controls)", action)

    def _reload_connections(self, requested: Any) -> Any:
        """New connect_in / connect_out patterns apply at once (the next poll joins what they
        match; joined ports stay joined); other port settings at the next start. Returns the
        port settings in force."""
        from melodyflowd.live.connect import open_connector

        old = self.requested_ports
        patterns = {"connect_in": requested.connect_in, "connect_out": requested.connect_out}
        blank = dict.fromkeys(patterns, ())
        if replace(requested, **blank) != replace(old, **blank):
            log.warning("port settings changed: they take effect at the next restart")
        if (requested.connect_in, requested.connect_out) == (old.connect_in, old.connect_out):
            return self.settings.ports
        ports = replace(self.settings.ports, **patterns)
        try:
            connector = open_connector(ports)
        except UserError as exc:
            log.error("new connections: %s; keeping the old ones", exc)
            return self.settings.ports
        if self.connector is not None:
            self.connector.close()
        self.connector = connector
        self.requested_ports = replace(old, **patterns)
        log.info("connect_in %s, connect_out %s", list(ports.connect_in) or "none",
                 list(ports.connect_out) or "none")
        self._connect_ports()
        return ports

    def _connect_ports(self) -> None:
        """Join the ports that match connect_in / connect_out and are new (main loop)."""
        if self.connector is None:
            return
        try:
            made = self.connector.poll()
        except Exception as exc:                # the graph changed under us: next time
            log.warning("looking for ports to connect: %s", exc)
            return
        for line in made:
            log.info("%s", line)

    def shutdown(self) -> None:
        """Stop the callback, send every note-off owed, close the ports, stop the child."""
        sdnotify.stopping()
        gc.enable()
        if self.connector is not None:
            self.connector.close()
            self.connector = None
        if self.view is not None:
            self.view.close()
            self.view = None
        if self.ports is not None:
            self.ports.stop_input()
            time.sleep(0.01)                      # let a callback in flight finish
            offs = self.engine.panic() if self.engine is not None else []
            for message in offs:
                self.ports.send(message)
            if offs:
                log.info("sent %d note-offs for what was sounding", len(offs))
            log.info("%s", self.stats_line())
            self.ports.close(drain=0.05 if self.ports.backend == "jack" else 0.0)
            self.ports = None
        if self.generator is not None:
            try:
                self.generator.stop()
            except Exception:  # never let the child's trouble hide the exit status
                log.exception("stopping the generator")
            self.generator = None


def run(settings: Any) -> int:
    """Serve until SIGTERM/SIGINT; the exit code (0 on a clean stop). UserError from the
    start-up (chart, bank, ports, model) propagates to the CLI, which exits 2."""
    return Daemon(settings).run()


def _chart_name(source: str | None, chart: Any) -> str:
    """The chart file for the log, or for a link (which can be a whole playlist) its tune."""
    if source is None or "://" in source:
        return repr(chart.title)
    return source
