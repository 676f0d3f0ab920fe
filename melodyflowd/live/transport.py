"""Where in the song are we? MIDI clock / Song Position Pointer / Start-Continue-Stop, or an
internal clock at the chart's tempo. Pure: every call gets the time (seconds, any monotonic
clock such as time.perf_counter) from the caller; nothing here reads a clock.

Positions are absolute quarter-note beats since the start of the song (the form loops in
the engine, not here). `position` turns them into bars, each at its own meter's length
(`bar_starts`, which the engine sets from the chart; the form loops).

External clock (a DAW or drum machine sends it):
- Clock (0xF8) is 24 ticks a quarter note. The tempo comes from the intervals between
  ticks, smoothed (an exponential moving average, outliers ignored). Between two ticks the
  position moves on at that tempo, never more than one tick ahead of the last tick, so it
  stands still when the clock stops and never jumps backwards when the next tick comes.
- Start (0xFA): position 0, running. Continue (0xFB): running from where it was (or from
  the last Song Position Pointer). If clock ticks were arriving, the first tick after
  Start/Continue is the downbeat (as MIDI says) and the position waits for it. If no clock
  was arriving (many DAWs send ticks only while playing), the position waits up to
  START_GRACE (0.1 s) for a first tick, which is then the downbeat; when none comes, an
  internal clock at the chart's tempo runs from the Start, and ticks that appear later
  carry on from wherever it is.
- Stop (0xFC): the position freezes where it is; Continue resumes from there.
- Song Position Pointer (0xF2 lsb msb): position in 16th notes (4 a beat) since the start,
  whatever the meters on the way (a DAW counts them so too).
- Ticks while stopped (DAWs send them all the time) only update the tempo estimate.

Internal clock: when nothing has started the transport, the engine calls
`ensure_running(now)` at the first remapped note: an internal clock starts at beat 0 at
the chart tempo (or follows the clock ticks, when ticks are arriving without a Start).
After an external Stop the position stays frozen (the DAW is in charge) until it starts
again; `ensure_running` does not restart it.

Real time: every change recomputes `line`, one tuple that says where the position is
(anchor time, anchor beat, tempo, how far it may move ahead of the anchor, and how long it
holds still). `beat_on(line, now)` is a few float operations on it: `beat_at` and the
engine's note path both call it (no property on the way).
"""

from __future__ import annotations

from melodyflowd.music.meter import bar_at

CLOCK = 0xF8
START = 0xFA
CONTINUE = 0xFB
STOP = 0xFC
SONG_POSITION = 0xF2

PPQN = 24
TICK_BEATS = 1.0 / PPQN
SMOOTHING = 0.15            # weight of a new clock interval in the tempo average
MAX_TICK_GAP = 0.25         # s; a longer gap between ticks (< 10 bpm) is a pause, not tempo
CLOCK_RECENT = 0.5          # s; ticks this recent mean "a clock is arriving"
START_GRACE = 0.1           # s; a first tick this soon after Start/Continue is the downbeat
_INF = float("inf")


def beat_on(line: tuple[float, float, float, float, float], now: float) -> float:
    """The position at `now` on a `Transport.line` (t, beat, tempo, cap, hold): `beat` while
    now - t <= hold, else moved on at `tempo` from (t, beat), at most `cap` beats ahead.
    The one place this arithmetic lives (beat_at and the engine's note path call it)."""
    t, beat, tempo, cap, hold = line
    if now - t > hold:
        ahead = (now - t) * tempo / 60.0
        if ahead > 0.0:
            beat += ahead if ahead <= cap else cap
    return beat


class Transport:
    """Position and tempo from MIDI transport messages, or an internal clock.

    Transport(tempo, beats_per_bar): tempo is the chart's quarter-note bpm, used by the
    internal clock; beats_per_bar is the bar length in quarter-note beats (for position())
    until `bar_starts` (the start beat of every bar of the form, and its length, as
    meter.bar_starts gives them) says where each bar starts.
    """

    __slots__ = ("chart_tempo", "bar_starts", "_started", "_running", "_clocked",
                 "_await_tick", "_base", "_ticks", "_anchor_time", "_last_clock", "_interval",
                 "clock_ticks", "line")

    def __init__(self, tempo: float, beats_per_bar: float = 4.0) -> None:
        if not tempo > 0:
            raise ValueError(f"tempo must be > 0, got {tempo!r}")
        self.chart_tempo = float(tempo)      # change it with set_tempo (keeps `line` right)
        self.bar_starts: tuple[float, ...] = (0.0, float(beats_per_bar))
        self._started = False          # a position is known (Start, SPP, internal start)
        self._running = False
        self._clocked = False          # running and following clock ticks
        self._await_tick = False       # clocked: hold still until the first tick
        self._base = 0.0               # beats at the anchor ...
        self._ticks = 0                # ... plus clock ticks counted since the anchor
        self._anchor_time = 0.0        # time of the anchor or the last counted tick
        self._last_clock: float | None = None
        self._interval: float | None = None   # smoothed seconds per tick
        self.clock_ticks = 0           # every tick ever received (for stats and tests)
        # (anchor time, anchor beat, tempo, max beats ahead, hold): see beat_at; None while
        # no position is known. Recomputed by _relin() after every change, read lock-free.
        self.line: tuple[float, float, float, float, float] | None = None

    # -- queries ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running

    @property
    def started(self) -> bool:
        """True once a position is known (beat_at no longer returns None)."""
        return self._started

    @property
    def clocked(self) -> bool:
        """True while running on external clock ticks."""
        return self._running and self._clocked

    @property
    def clock_tempo(self) -> float | None:
        """Tempo measured from the clock ticks (bpm), None before two ticks."""
        if self._interval is None:
            return None
        return 60.0 / (self._interval * PPQN)

    @property
    def tempo(self) -> float:
        """The tempo the position moves at: the clock's while clocked, else the chart's."""
        if self._clocked and self._interval is not None:
            return 60.0 / (self._interval * PPQN)
        return self.chart_tempo

    def beat_at(self, now: float) -> float | None:
        """Absolute quarter-note beats since the song start at time `now`; None when no
        position is known yet (nothing started, no clock, no note played).

        From `line` = (t, beat, tempo, cap, hold): the position holds at `beat` while
        now - t <= hold (stopped: hold = inf; waiting for the first tick after Start:
        START_GRACE, or inf when ticks are arriving), else it moves on at `tempo` from
        (t, beat), never behind `beat` and never more than `cap` beats ahead of it (one tick
        when clocked). The arithmetic is `beat_on`'s."""
        line = self.line
        if line is None:
            return None
        return beat_on(line, now)

    def _relin(self) -> None:
        """Recompute `line` from the state (after every change; one reference assignment)."""
        if not self._started:
            self.line = None
            return
        if not self._running:
            hold = _INF
        elif self._await_tick:
            hold = _INF if self._clocked else START_GRACE
        else:
            hold = -_INF
        self.line = (self._anchor_time, self._base + self._ticks * TICK_BEATS, self.tempo,
                     TICK_BEATS if self._clocked else _INF, hold)

    def position(self, now: float) -> tuple[int, float] | None:
        """(bar number since the start, beat within the bar) or None."""
        beat = self.beat_at(now)
        if beat is None:
            return None
        bar, start = bar_at(self.bar_starts, beat)
        return bar, beat - start

    # -- changes ---------------------------------------------------------------------------

    def feed(self, msg, now: float) -> bool:
        """Take a MIDI message; True when it was a transport message (clock, SPP, Start,
        Continue, Stop). Anything else, or a malformed message, is ignored (False)."""
        if not msg:
            return False
        status = msg[0]
        if status == CLOCK:
            self.tick(now)
        elif status == START:
            self._go(0.0, now)
        elif status == CONTINUE:
            self._go(self.beat_at(now) or 0.0, now)
        elif status == STOP:
            if self._running:
                self._freeze(now)
                self._relin()
        elif status == SONG_POSITION:
            if len(msg) < 3 or not (0 <= msg[1] < 128 and 0 <= msg[2] < 128):
                return False
            sixteenths = msg[1] | (msg[2] << 7)
            self._base = sixteenths / 4.0
            self._ticks = 0
            self._anchor_time = now
            self._started = True
            if self._running and self._clocked:
                self._await_tick = True
            self._relin()
        else:
            return False
        return True

    def tick(self, now: float) -> None:
        """A clock tick (0xF8) at `now`. The steady case (running on ticks) in straight-line
        code, as the engine calls it from the MIDI callback 24 times a beat; every other
        case goes to _tick (tests compare the two)."""
        if not self._clocked or self._await_tick or not self._running:
            self._tick(now)
            return
        self.clock_ticks += 1
        last = self._last_clock
        interval = self._interval
        if last is not None:
            gap = now - last
            if 0.0 < gap <= MAX_TICK_GAP:
                interval = gap if interval is None else interval + SMOOTHING * (gap - interval)
                self._interval = interval
        self._last_clock = now
        ticks = self._ticks + 1
        self._ticks = ticks
        self._anchor_time = now
        self.line = (now, self._base + ticks * TICK_BEATS,
                     self.chart_tempo if interval is None else 60.0 / (interval * PPQN),
                     TICK_BEATS, -_INF)

    def ensure_running(self, now: float) -> None:
        """Start the internal clock at beat 0 unless a position is already known.

        Called by the engine at the first remapped note. When clock ticks are arriving
        (without a Start), the position follows them from this moment instead."""
        if self._started:
            return
        self._started = True
        self._running = True
        self._base = 0.0
        self._ticks = 0
        self._anchor_time = now
        self._await_tick = False
        self._clocked = self._clock_recent(now)
        self._relin()

    def set_tempo(self, tempo: float, now: float | None = None) -> None:
        """A new chart tempo (a reloaded chart). The internal clock keeps its position."""
        if not tempo > 0:
            raise ValueError(f"tempo must be > 0, got {tempo!r}")
        if now is not None and self._running and not self._clocked:
            self._reanchor(now)
        self.chart_tempo = float(tempo)
        self._relin()

    def reset(self) -> None:
        """Forget the position (as before anything started); the tempo estimate stays."""
        self._started = self._running = self._clocked = self._await_tick = False
        self._base = 0.0
        self._ticks = 0
        self._relin()

    # -- internals -------------------------------------------------------------------------

    def _clock_recent(self, now: float) -> bool:
        return self._last_clock is not None and 0.0 <= now - self._last_clock <= CLOCK_RECENT

    def _reanchor(self, now: float) -> None:
        beat = self.beat_at(now)
        self._base = 0.0 if beat is None else beat
        self._ticks = 0
        self._anchor_time = now

    def _go(self, beat: float, now: float) -> None:
        self._started = True
        self._running = True
        self._base = beat
        self._ticks = 0
        self._anchor_time = now
        self._clocked = self._clock_recent(now)
        self._await_tick = True
        self._relin()

    def _freeze(self, now: float) -> None:
        if not self._clocked:
            self._reanchor(now)
        self._running = False
        self._clocked = False
        self._await_tick = False

    def _tick(self, now: float) -> None:
        self.clock_ticks += 1
        last = self._last_clock
        if last is not None:
            gap = now - last
            if 0.0 < gap <= MAX_TICK_GAP:
                if self._interval is None:
                    self._interval = gap
                else:
                    self._interval += SMOOTHING * (gap - self._interval)
        self._last_clock = now
        if not self._running:
            return
        if not self._clocked:
            if self._await_tick and now - self._anchor_time <= START_GRACE:
                # Ticks started right after Start/Continue: this one is the downbeat.
                self._anchor_time = now
            else:
                # Running on the internal clock and ticks appear: carry on from here on them.
                self._reanchor(now)
            self._clocked = True
            self._await_tick = False
            self._relin()
            return
        if self._await_tick:
            self._await_tick = False       # the first tick after Start is the downbeat
        else:
            self._ticks += 1
        self._anchor_time = now
        self._relin()
