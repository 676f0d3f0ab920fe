"""The remapping engine: sans-I/O, like h11. `handle(message, now)` -> messages out.

The player gives the rhythm (which key, when, how hard); the engine answers each remapped
key with the next note of the phrase the bank holds for the chord sounding at that moment.
It never reads a clock or touches a port: the caller passes the time (`now`, seconds on
the clock the Transport is fed with, e.g. time.perf_counter) and sends what comes back.
Messages are sequences of ints (what python-rtmidi hands the callback); outputs are lists.

Behaviour
---------
- Remapped keys: note-ons on a remapped channel (`EngineSettings.channels`; () = all but
  channel 10, General MIDI's drums, which passes through unless named) at or
  above the split point (`split`, None = every key). Everything else passes through
  unchanged, in order: other notes, CCs (except the control CCs), pitch bend, program
  change, channel pressure, SysEx, clock and other system messages.
- Note-on: look up the chord span (bar and chord) at `now` (plus `anticipation_ms`, read at
  the current tempo), take the next note of that span's phrase in the current variation and
  send it with the player's velocity on the key's channel (or `out_channel`). The key is
  remembered; its note-off (or velocity-0 note-on) ends the note it made. If nothing has
  started the transport, the first remapped note starts its internal clock.
- Phrase position: restarts at every new chord span (a chord change, and every bar line).
  Past the end of the phrase the line goes on (build_program extends every span's tuple
  with live/continuation.py: the other variations' lines over the same span, then a
  chord-scale walk toward the next span's first note); it wraps only past 32 notes.
- Spans with no notes (the player must still sound), first that applies:
    1. the same span's notes in the other variations (same chord, so still right);
    2. the chord's own tones as an arpeggio within the octave around the bank's median
       pitch, entered at the chord tone nearest the last note played;
    3. for NC (no chord tones): the notes of the nearest bar of this variation that has any
       (then of any variation);
    4. a bank with no notes at all: the bank's median pitch (67) alone.
- mono (default): one engine note at a time, across all channels; a new key ends the
  sounding note first (the old key's later note-off sends nothing). poly: each key has its
  note; when two keys land on the same output note it is re-struck (note-off, note-on) and
  sounds until both keys are up (reference counts), so every output note-on has exactly one
  note-off.
- Polyphonic aftertouch on a remapped key follows it to the note it made (dropped when the
  key's note was already ended); channel pressure, bend etc. pass through.
- contour (off by default): when the key is above the player's previous key, take, among
  the variations' notes at the current phrase position, the one that moves up from the last
  note played (the current variation's when it does, else the smallest such move); below:
  down. When none moves that way, the one that comes closest to it.
- Variations: `variation` is the selected one; the control CCs step it (next/previous,
  wrapping) or select it (value modulo the number of variations); with
  `rotate_variations` the variation played is `(variation + form repeats) % N`.
- Control CCs (`EngineSettings.controls`, on `controls.channel` or any channel) are consumed,
  not passed on: regenerate (value > 0: `regenerate_requests += 1`, the daemon polls it),
  next/previous/select variation, panic (value > 0). CC 120 (All Sound Off), CC 123 (All
  Notes Off), MIDI Stop and System Reset end every note the engine started, then pass on.
- `offer(bank, chart=None)`: the new bank (and chart) is built into lookup tables in the
  caller's thread and handed over with one reference assignment; the callback installs it at
  the next bar line (at once when the transport is not running). Sounding notes keep their
  note-offs: the key -> note memory is not part of the bank.
- `update_settings(settings)`: new engine settings live from the next message (one
  reference assignment, safe from another thread). A key that went down remapped stays the
  engine's key until it comes up, whatever the new split or channels say: its aftertouch
  follows its note and its note-off ends it (and is not passed on).
- Malformed input (empty, truncated, data bytes > 127, unknown status, a note-off without a
  note-on, a broken SysEx) never raises: it is dropped and counted in `dropped`.

Real time: `handle` does a few list/dict lookups in tables built when a bank is offered
(build_program, in the caller's thread); it does no I/O, no logging and takes no lock.
Between two notes the CPU caches go cold, and then every Python line costs ~0.3 us, every
call, property or int() a few us. So the common messages take a fast path, straight-line
code in `handle` itself: clock ticks (Transport.tick), note-offs (two lookups), note-ons
(the position from Transport.line by transport.beat_on, the helper Transport.beat_at uses;
while it stays inside the chord span of the last note, the next note of the cached phrase;
else the next span of the form from one precomputed tuple, `_enter`, which falls back on
the reference path's helpers `locate`, `_variation_in` and `_phrase_position`). Everything
else, and any doubt, takes the reference path (`_handle`, `_note_on`), which
tests/live/test_engine_fast.py checks the fast path against. Two names only: the fast
path and the reference path. A bank swap never frees the old bank in the callback
(`release_retired`).
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from typing import TYPE_CHECKING

from melodyflowd.live import follow as follow_mode
from melodyflowd.live.continuation import continue_lines
from melodyflowd.live.transport import CLOCK, STOP, beat_on
from melodyflowd.music.meter import bar_at, bar_start

if TYPE_CHECKING:
    from collections.abc import Sequence

    from melodyflowd.live.transport import Transport
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.phrases import PhraseBank
    from melodyflowd.music.theory import Chord
    from melodyflowd.settings import EngineSettings

NOTE_OFF = 0x80
NOTE_ON = 0x90
POLY_PRESSURE = 0xA0
CONTROL = 0xB0
ALL_SOUND_OFF = 120
ALL_NOTES_OFF = 123
SYSEX = 0xF0
SYSEX_END = 0xF7
SYSTEM_RESET = 0xFF
DEFAULT_CENTRE = 67
_INF = float("inf")
_EPS = 1e-6          # beats: the span cache holds this far inside a span's edges
RELEASE_VELOCITY = 64
# register: keys -- the weight of a new key in the moving mean of the keys played, and how
# far (semitones) the line may sound from that mean before it moves by octaves.
KEYS_WEIGHT = 0.25
KEYS_REACH = 11

# Length of every system message by status (SysEx checked apart); missing = undefined.
_SYSTEM_LENGTH = {0xF1: 2, 0xF2: 3, 0xF3: 2, 0xF6: 1, 0xF8: 1, 0xFA: 1, 0xFB: 1, 0xFC: 1,
                  0xFE: 1, 0xFF: 1}
DRUM_CHANNEL = 9          # MIDI channel 10 (0-based 9): General MIDI drums, not remapped
                         # unless EngineSettings.channels names it

# Length of channel messages by the status's high nibble.
_CHANNEL_LENGTH = {0x80: 3, 0x90: 3, 0xA0: 3, 0xB0: 3, 0xC0: 2, 0xD0: 2, 0xE0: 3}

# [output slot: channel * 128 + pitch] -> (note-off status, pitch)
_SLOT = tuple((NOTE_OFF | (slot >> 7), slot & 127) for slot in range(2048))

_CHORD = follow_mode.CHORD

# Control actions
_NONE, _REGENERATE, _NEXT, _PREVIOUS, _SELECT, _PANIC = range(6)


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Program:
    """Everything `handle` looks up, built once per (bank, chart) outside the callback.

    phrases[v][bar][span] is the tuple of pitches to play over that chord span in variation
    v; arpeggio[v][bar][span] is True where that tuple is the chord-tone fallback (entered
    at the tone nearest the last note).

    bar_starts[bar] is the beat (from the start of the form) where a bar starts, each bar at
    its own meter's length, and bar_starts[n_bars] = form_len (meter.bar_starts).

    For the note-on path, the chord spans of the whole form in playing order, g = 0 ..
    n_spans - 1: span_bar[g] and span_index[g] say which (bar, span) g is; span_lo[g] and
    span_hi[g] are where it starts and ends in beats from the start of the form (the span
    holds for span_lo <= beat < span_hi, up to the 1e-9 beat tolerance at chord changes);
    first_span[bar] is the g of a bar's first span. near[v][g] is None, or for an arpeggio
    span a 128-entry tuple: the index of the phrase note nearest to each last pitch.
    recs[v][g] = (span_lo + _EPS, span_hi - _EPS, phrase, bar, span, near): all the
    note-on path needs to step into span g, in one tuple.
    """

    bank: PhraseBank
    chart: Chart
    n_bars: int
    bar_starts: tuple[float, ...]                             # [bar] -> its start beat; + end
    n_var: int
    starts: tuple[tuple[float, ...], ...]                     # [bar] -> span start beats
    phrases: tuple[tuple[tuple[tuple[int, ...], ...], ...], ...]
    arpeggio: tuple[tuple[tuple[bool, ...], ...], ...]
    centre: int
    form_len: float = 0.0
    n_spans: int = 0
    span_bar: tuple[int, ...] = ()
    span_index: tuple[int, ...] = ()
    span_lo: tuple[float, ...] = ()
    span_hi: tuple[float, ...] = ()
    first_span: tuple[int, ...] = ()
    near: tuple[tuple[tuple[int, ...] | None, ...], ...] = ()
    recs: tuple[tuple[tuple, ...], ...] = ()


def build_program(bank: PhraseBank, chart: Chart) -> Program:
    """Precompute the per-variation, per-bar, per-chord-span pitch tuples (see Program)."""
    if not chart.bars:
        raise ValueError("the chart has no bars")
    if not bank.variations or not all(bank.variations):
        raise ValueError("the phrase bank has no variations")
    starts = tuple(tuple(float(s.start_beat) for s in bar.chords) or (0.0,)
                   for bar in chart.bars)
    centre = _centre(bank)
    raw = _notes_by_span(bank, starts)
    phrases, arpeggio = _pitch_tables(raw, chart, starts, centre)
    bar_starts = chart.bar_starts
    span_bar, span_index, span_lo, span_hi, first_span = _form_spans(starts, bar_starts)
    spans = list(zip(span_bar, span_index, strict=True))
    n_var = len(bank.variations)
    near = tuple(tuple(_nearest_table(phrases[v][b][s]) if arpeggio[v][b][s] else None
                       for b, s in spans)
                 for v in range(n_var))
    recs = tuple(tuple((span_lo[g] + _EPS, span_hi[g] - _EPS, phrases[v][b][s], b, s,
                        near[v][g])
                       for g, (b, s) in enumerate(spans))
                 for v in range(n_var))
    n_bars = len(chart.bars)
    return Program(bank=bank, chart=chart, n_bars=n_bars, bar_starts=bar_starts,
                   n_var=n_var, starts=starts, phrases=phrases,
                   arpeggio=arpeggio, centre=centre, form_len=bar_starts[-1],
                   n_spans=len(span_bar), span_bar=span_bar,
                   span_index=span_index, span_lo=span_lo,
                   span_hi=span_hi, first_span=first_span, near=near,
                   recs=recs)


def _centre(bank: PhraseBank) -> int:
    """The median pitch of the bank: where chord-tone fallbacks are played."""
    pitches = sorted(n.pitch for var in bank.variations for ph in var for n in ph.notes)
    return pitches[len(pitches) // 2] if pitches else DEFAULT_CENTRE


def _notes_by_span(bank: PhraseBank, starts: tuple[tuple[float, ...], ...]
                   ) -> list[list[list[tuple[int, ...]]]]:
    """raw[v][bar][span]: the bank's own pitches in each chord span, in onset order."""
    raw = []
    for variation in bank.variations:
        rows = []
        for b, bar_starts in enumerate(starts):
            spans: list[list[int]] = [[] for _ in bar_starts]
            phrase = variation[b % len(variation)]
            for note in sorted(phrase.notes, key=lambda n: n.beat):
                s = max(0, bisect_right(bar_starts, note.beat + 1e-6) - 1)
                spans[s].append(note.pitch)
            rows.append([tuple(p) for p in spans])
        raw.append(rows)
    return raw


def _pitch_tables(raw: list[list[list[tuple[int, ...]]]], chart: Chart,
                  starts: tuple[tuple[float, ...], ...], centre: int) -> tuple[tuple, tuple]:
    """(phrases, arpeggio) of Program: every span's pitches, and whether they are the
    chord-tone fallback."""
    phrases, arpeggio = [], []
    for v in range(len(raw)):
        bars_p, bars_a = [], []
        for b, bar_starts in enumerate(starts):
            cells = [_span_pitches(raw, chart, centre, v, b, s) for s in range(len(bar_starts))]
            bars_p.append(tuple(notes for notes, _ in cells))
            bars_a.append(tuple(arp for _, arp in cells))
        phrases.append(tuple(bars_p))
        arpeggio.append(tuple(bars_a))
    return continue_lines(tuple(phrases), tuple(arpeggio), chart), tuple(arpeggio)


def _span_pitches(raw: list[list[list[tuple[int, ...]]]], chart: Chart, centre: int,
                  v: int, b: int, s: int) -> tuple[tuple[int, ...], bool]:
    """The pitches of span s of bar b in variation v, and True when they are the chord-tone
    fallback. In order: the variation's own notes there, another variation's, the chord's
    tones around the centre, the nearest bar's notes, the centre alone."""
    n_var = len(raw)
    notes = raw[v][b][s] or next((raw[(v + k) % n_var][b][s] for k in range(1, n_var)
                                  if raw[(v + k) % n_var][b][s]), ())
    if notes:
        return notes, False
    chords = chart.bars[b].chords
    tones = set(chords[s].chord.tones) if s < len(chords) else set()
    notes = tuple(p for p in range(centre - 6, centre + 6) if 0 <= p <= 127 and p % 12 in tones)
    if notes:
        return notes, True
    return _nearest_bar_notes(raw, v, b) or (centre,), False


def _nearest_bar_notes(raw: list[list[list[tuple[int, ...]]]], v: int, b: int
                       ) -> tuple[int, ...] | None:
    """The notes of the nearest bar that has any, variation v first, then the others."""
    n_var, n_bars = len(raw), len(raw[0])
    for order in (v, *[(v + k) % n_var for k in range(1, n_var)]):
        for d in range(1, n_bars + 1):
            for bb in ((b - d) % n_bars, (b + d) % n_bars):
                notes = tuple(p for span in raw[order][bb] for p in span)
                if notes:
                    return notes
    return None


def _form_spans(starts: tuple[tuple[float, ...], ...],
                bar_starts: tuple[float, ...]) -> tuple[tuple, ...]:
    """(span_bar, span_index, span_lo, span_hi, first_span) of Program: the chord spans of
    the form in playing order, each bar at its own length. Empty when a bar's chords are out
    of order: then every note takes the reference path."""
    span_bar, span_index, span_lo, span_hi, first_span = [], [], [], [], []
    ordered = all(list(row) == sorted(row) for row in starts)
    for b in range(len(starts) if ordered else 0):
        first_span.append(len(span_bar))
        bar_len = bar_starts[b + 1] - bar_starts[b]
        edges = [min(max(start, 0.0), bar_len) for start in starts[b][1:]]
        for s, (lo, hi) in enumerate(zip([0.0, *edges], [*edges, bar_len], strict=True)):
            span_bar.append(b)
            span_index.append(s)
            span_lo.append(bar_starts[b] + lo)
            span_hi.append(bar_starts[b] + max(lo, hi))
    return (tuple(span_bar), tuple(span_index), tuple(span_lo), tuple(span_hi),
            tuple(first_span))


def _nearest_table(phrase: tuple[int, ...]) -> tuple[int, ...]:
    """[last pitch] -> the index of the phrase note nearest to it (arpeggio spans)."""
    return tuple(min(range(len(phrase)), key=lambda i: abs(phrase[i] - last))
                 for last in range(128))


def locate(program: Program, beat: float) -> tuple[int, int, int]:
    """Where `beat` (absolute beats) falls: (bar since the start, bar of the form, chord
    span in that bar). The chord-span lookup of the reference path; the fast path's
    precomputed spans (Program.recs) agree with it."""
    abs_bar, start = bar_at(program.bar_starts, beat)
    bar = abs_bar % program.n_bars
    span = bisect_right(program.starts[bar], beat - start + 1e-9) - 1
    return abs_bar, bar, max(span, 0)


def _as_list(msg: Sequence[int]) -> list[int]:
    """A message passed on as it came (rtmidi sends lists; other callers may pass tuples)."""
    return msg if isinstance(msg, list) else list(msg)


@dataclass(frozen=True, slots=True)
class _Config:
    """The settings as `handle` uses them (tables), swapped whole by `update_settings`."""

    settings: EngineSettings
    mono: bool
    out_channel: int | None
    anticipation: float                  # seconds
    contour: bool
    keys_register: bool                  # register: keys
    rotate: bool
    remap: tuple[bool, ...]              # [channel * 128 + note] -> True when remapped
    follow: bool                         # follow mode: the played chord can decide
    role: tuple[int, ...]                # [channel * 128 + note] -> follow.NONE/CHORD/BASS
    cc_action: tuple[int, ...]           # [cc number] -> control action
    cc_channel: int                      # -1 = any channel
    key_base: tuple[int, ...]            # [status] -> channel * 128 (note-on/off statuses)
    slot_base: tuple[int, ...]           # [status] -> output channel * 128
    on_status: tuple[int, ...]           # [status] -> note-on status on the output channel

    @classmethod
    def build(cls, settings: EngineSettings) -> _Config:
        channels = set(settings.channels) if settings.channels else \
            set(range(16)) - {DRUM_CHANNEL}
        split = follow_mode.effective_split(settings)
        split = split if split is not None else 0
        role = follow_mode.roles(settings)
        remap = tuple((k >> 7) in channels and (k & 127) >= split and not role[k]
                      for k in range(2048))
        follow = bool(settings.follow)
        controls = settings.controls

        def out(status: int) -> int:
            return status & 15 if settings.out_channel is None else settings.out_channel

        actions = [_NONE] * 128
        for number, action in ((controls.regenerate, _REGENERATE),
                               (controls.next_variation, _NEXT),
                               (controls.previous_variation, _PREVIOUS),
                               (controls.select_variation, _SELECT),
                               (controls.panic, _PANIC)):
            if number is not None and 0 <= number < 128:
                actions[number] = action
        return cls(settings=settings, mono=settings.mode != "poly",
                   out_channel=settings.out_channel,
                   anticipation=max(0.0, float(settings.anticipation_ms)) / 1000.0,
                   contour=bool(settings.contour),
                   keys_register=settings.register == "keys",
                   rotate=bool(settings.rotate_variations),
                   remap=remap, follow=follow, role=role, cc_action=tuple(actions),
                   cc_channel=-1 if controls.channel is None else controls.channel,
                   key_base=tuple((status & 15) << 7 for status in range(256)),
                   slot_base=tuple(out(status) << 7 for status in range(256)),
                   on_status=tuple(NOTE_ON | out(status) for status in range(256)))


@dataclass(frozen=True, slots=True)
class _Offer:
    seq: int
    program: Program
    bar: int | None          # the bar it was offered in (swap once the bar is another one);
                             # None = the bar the callback first sees it in


class Engine:
    """Engine(settings, chart, bank, transport); see the module docstring.

    Public state (read freely from other threads): `bank`, `chart`, `settings`, `variation`,
    `notes_remapped`, `regenerate_requests`, `swaps`, `dropped`, `errors`, `pending`,
    `variation_at()`, `upcoming()`, `last_pitch`, `sounding()`.
    `handle` runs in the MIDI callback thread. `offer` and `update_settings` may be called
    from any thread.
    `panic` mutates the note memory: call it from the callback thread, or once the input
    is closed (shutdown).
    """

    # Slots, not an instance dict: Python 3.11 shares an instance dict's keys (and reads
    # attributes straight from its values) only up to 30 attributes; past that every
    # self.x is a dict lookup. A slot is a read at a fixed offset. What handle() touches
    # comes first (neighbouring memory).
    __slots__ = (
        "_config", "transport", "_offer", "_installed", "_down", "_held", "_lo", "_hi",
        "_span_config", "_pos", "_index", "_phrase", "_length", "_ref", "_last_out",
        "_last_key", "_keys_centre", "_octaves", "notes_remapped",
        "_g", "_recs", "_base", "_bar0", "_bar", "_span", "_v", "_fbar", "_window",
        "_program", "_variation", "_offer_bar", "_offer_bar_seq",
        "_offer_seq", "_retired", "dropped", "errors", "regenerate_requests", "swaps",
        "_follower",
        "__weakref__")

    def __init__(self, settings: EngineSettings, chart: Chart, bank: PhraseBank,
                 transport: Transport) -> None:
        self.transport = transport
        self._program = build_program(bank, chart)
        transport.bar_starts = self._program.bar_starts
        self._variation = 0
        self.notes_remapped = 0
        self.regenerate_requests = 0
        self.swaps = 0
        self.dropped = 0
        self.errors = 0
        self._offer: _Offer | None = None
        self._installed: _Offer | None = None      # the last offer taken (is _offer: none
                                                   # pending)
        # (offer seq, first beat, end beat) of the bar a pending offer waits in: a number,
        # not the offer, so that a superseded offer is freed where it is dropped (in offer())
        self._window: tuple[int, float, float] = (0, 0.0, 0.0)
        # Programs replaced by a swap: kept here so that the callback never frees a whole
        # bank; the main loop drops them (release_retired), which frees them in its thread.
        self._retired: list[Program] = []
        self._offer_seq = 0
        self._offer_bar = -1               # bar an offer was made in ...
        self._offer_bar_seq = 0            # ... and which offer that was
        self._config = _Config.build(settings)
        self._follower = follow_mode.Follower()   # follow mode: the chord keys' state
        # Note memory: key -> output slot (channel * 128 + pitch); slot -> keys holding it.
        self._held: dict[int, int] = {}
        self._down = [0] * 2048            # keys that went down remapped and are still down
        self._ref = [0] * 2048
        # Phrase position.
        self._phrase: tuple[int, ...] | None = None
        self._length = 0                   # len(_phrase) ...
        self._index = 0                    # ... and _pos % _length, while the span cache holds
        self._bar = -1
        self._span = -1
        self._pos = 0
        self._last_out = -1                # last pitch sent
        self._last_key = -1                # last remapped key's note number
        self._keys_centre = -1.0           # register: keys: moving mean of the keys played
        self._octaves = 0                  # ... and the octaves the line is moved by
        # The span cache of the note-on path: while _span_config is the config and
        # _lo <= beat < _hi, the phrase is still _phrase (same bar, span and variation).
        # _g: that span's place in the form (-1: no cache).
        self._lo = _INF
        self._hi = -_INF
        self._span_config: _Config | None = None
        self._g = -1
        self._recs: tuple[tuple, ...] = ()     # program.recs[v] of the cached span's v
        self._base = 0.0                   # beats at the start of the cached span's form
        self._bar0 = 0                     # ... and its bar number
        self._v = 0                        # variation and form bar of the cached span
        self._fbar = 0

    # -- public ----------------------------------------------------------------------------

    @property
    def variation(self) -> int:
        """The selected variation (0-based)."""
        return self._variation

    @variation.setter
    def variation(self, value: int) -> None:
        self._variation = value
        self._forget_span()

    @property
    def settings(self) -> EngineSettings:
        return self._config.settings

    def update_settings(self, settings: EngineSettings) -> None:
        """New engine settings (a reloaded config), live from the next message on. Safe from
        another thread (one reference assignment). Keys that are down keep their notes: their
        note-offs end them even when the new split or channels no longer remap them."""
        self._config = _Config.build(settings)

    @property
    def bank(self) -> PhraseBank:
        return self._program.bank

    @property
    def chart(self) -> Chart:
        return self._program.chart

    @property
    def program(self) -> Program:
        return self._program

    @property
    def pending(self) -> bool:
        """True while an offered bank waits for its bar line."""
        return self._offer is not self._installed

    def variation_at(self, abs_bar: int) -> int:
        """The variation played in bar `abs_bar` (since the start), as a key there plays."""
        return self._variation_in(self._config, self._program, abs_bar)

    def upcoming(self, now: float) -> tuple[int, int, int, int] | None:
        """Where a remapped key pressed at `now` would play, as _note_on finds it (the
        anticipation added; contour aside): (bar since the start, chord span, variation,
        index into that span's phrase), or None while no position is known. For views in
        another thread: it only reads, so a note in flight may leave it a note behind."""
        program = self._program
        config = self._config
        transport = self.transport
        beat = transport.beat_at(now)
        if beat is None:
            return None
        if config.anticipation:
            beat += config.anticipation * transport.tempo / 60.0
        abs_bar, bar, span = locate(program, beat)
        v = self._variation_in(config, program, abs_bar)
        phrase = program.phrases[v][bar][span]
        if phrase is self._phrase and abs_bar == self._bar and span == self._span:
            return abs_bar, span, v, self._pos % len(phrase)
        last = self._last_out
        if program.arpeggio[v][bar][span] and last >= 0:
            return abs_bar, span, v, min(range(len(phrase)),
                                         key=lambda i: abs(phrase[i] - last))
        return abs_bar, span, v, 0

    @property
    def last_pitch(self) -> int:
        """The pitch of the last remapped note sent (-1 before the first)."""
        return self._last_out

    def sounding(self) -> list[tuple[int, int]]:
        """(channel, pitch) of every output note the engine holds on, sorted."""
        return sorted((slot >> 7, slot & 127) for slot in set(self._held.values()))

    def offer(self, bank: PhraseBank, chart: Chart | None = None,
              now: float | None = None) -> None:
        """Swap in a new bank (and chart) at the next bar line. Safe from another thread:
        the tables are built here, then handed over by one reference assignment. With
        `now`, the bar line is the one after `now`; else the one after the callback first
        sees the offer. A jump to another bar (Song Position Pointer) counts as a bar line."""
        latest = self._offer
        base = chart if chart is not None else (
            latest.program.chart if latest is not None else self._program.chart)
        program = build_program(bank, base)
        bar = None
        starts = self._program.bar_starts
        if now is not None and self.transport.running:
            beat = self.transport.beat_at(now)
            if beat is not None:
                bar, start = bar_at(starts, beat)
        self._offer_seq += 1
        offer = _Offer(self._offer_seq, program, bar)
        if bar is not None and (latest is None or latest is self._installed
                                or latest.program.bar_starts == starts):
            # The bar it waits in is known: tell handle()'s fast path now (before the offer
            # is published), so that no note has to take the reference path to find it out. (Not
            # when a pending bank of other bar lines could be swapped in meanwhile.)
            self._window = (offer.seq, start, bar_start(starts, bar + 1))
        self._offer = offer

    def offer_follow(self, program: follow_mode.FollowProgram) -> None:
        """Follow mode's tables (live.follow.build_follow: build them in the caller's
        thread, about a second), handed over by one reference assignment; the callback
        takes them at the next chord key or note. Safe from another thread."""
        self._follower.offer(program)

    @property
    def follow_chord(self) -> Chord | None:
        """Follow mode: the chord the hands hold (or held last); None before follow lines."""
        return self._follower.current

    @property
    def follow_split(self) -> int | None:
        """The split point in use (follow mode sets one when none is given)."""
        return follow_mode.effective_split(self._config.settings)

    def release_retired(self) -> int:
        """Drop the programs that bank swaps replaced (call it from the main loop, not the
        callback: the last reference to an old bank goes here, so it is freed here).
        Returns how many were dropped."""
        retired = self._retired
        n = len(retired)
        if n:
            del retired[:n]        # not clear(): one appended meanwhile by the callback stays
        return n

    def panic(self) -> list[list[int]]:
        """Note-offs for every note the engine started and still holds; forgets them."""
        out: list[list[int]] = []
        self._end_all(out)
        return out

    def handle(self, msg: Sequence[int], now: float) -> list[list[int]]:
        """One incoming MIDI message at time `now` -> the messages to send, in order."""
        try:
            # The fast path for what a player and a DAW send most: clock ticks, and note-ons
            # and note-offs of remapped keys while a position is known and no new bank is
            # due: straight-line code on attributes and tables, inline here (each call,
            # property or int() costs microseconds when the caches are cold, as they are
            # between two notes; a split into methods measured slower). It must give
            # exactly what _handle, the reference path, gives (tests/live/test_engine_fast.py
            # compares the two); anything else, or any doubt, takes _handle.
            size = len(msg)
            if size == 1 and msg[0] == CLOCK:
                # MIDI clock, 24 a beat while a DAW plays: the most frequent message.
                self.transport.tick(now)
                if self._offer is not self._installed:
                    self._maybe_install(now)
                return [msg] if type(msg) is list else [list(msg)]
            if size == 3:
                status, note, velocity = msg
                if 0x80 <= status < 0xA0 and 0 <= note < 128 and 0 <= velocity < 128:
                    config = self._config
                    key = config.key_base[status] + note      # channel * 128 + note
                    line = self.transport.line
                    if config.remap[key] and line is not None:
                        if status < NOTE_ON or not velocity:
                            if self._offer is not self._installed \
                                    and not self._waits(line, now):
                                return self._handle(msg, now)
                            self._down[key] = 0
                            slot = self._held.pop(key, None)
                            if slot is None:
                                return []
                            ref = self._ref
                            count = ref[slot] - 1
                            if count > 0:
                                ref[slot] = count
                                return []
                            ref[slot] = 0
                            off, pitch = _SLOT[slot]
                            return [[off, pitch,
                                     velocity if status < NOTE_ON else RELEASE_VELOCITY]]
                        if config.follow:
                            return self._fast_follow_note_on(msg, now, config, key, status,
                                                             note, velocity)
                        beat = beat_on(line, now)
                        if self._offer is not self._installed:
                            # A bank waits for its bar line: go on inside the bar it waits
                            # in (_waits, inline); past it, swap it in and go on.
                            window = self._window
                            if window[0] != self._offer.seq or line[4] == _INF:  # hold
                                return self._handle(msg, now)
                            if not window[1] <= beat < window[2]:
                                self._maybe_install(now)
                                if self.transport.line is not line:    # a new chart's tempo
                                    return self._handle(msg, now)
                        self._down[key] = 1
                        held = self._held
                        out: list[list[int]] | None = None
                        if held:
                            out = []
                            if key in held:
                                self._release(key, RELEASE_VELOCITY, out)
                            if config.mono and held:
                                self._end_all(out)
                        if config.anticipation:
                            beat += config.anticipation * line[2] / 60.0      # tempo
                        if self._lo <= beat < self._hi and self._span_config is config:
                            # The same chord span as the last note: its next note.
                            pos = self._pos
                            index = self._index
                        else:
                            pos = self._enter(config, beat)
                            index = pos % len(self._phrase)
                        pitch = self._phrase[index]
                        index += 1
                        self._index = 0 if index == self._length else index
                        if config.contour and self._last_key >= 0 and self._last_out >= 0 \
                                and note != self._last_key:
                            pitch = self._contour_pick(self._program, self._v, self._fbar,
                                                       self._span, pos, pitch,
                                                       1 if note > self._last_key else -1)
                        self._pos = pos + 1
                        if config.keys_register:
                            pitch = self._to_keys(pitch, note)
                        return self._sound(config, status, key, note, pitch, velocity, out)
                    role = config.role[key]
                    if role:
                        return self._fast_chord_key(msg, now, key, note, status, velocity,
                                                    role)
            return self._handle(msg, now)
        except Exception:           # a bug must never take the MIDI callback down
            self.errors += 1
            return []

    # -- internals -------------------------------------------------------------------------

    def _handle(self, msg: Sequence[int], now: float) -> list[list[int]]:
        """The reference path for any message: check it, then by kind."""
        if not msg:
            return self._drop()
        status = msg[0]
        if status == CLOCK and len(msg) == 1:     # the most frequent message
            self.transport.feed(msg, now)
            self._install_due(now)
            return [_as_list(msg)]
        if not 0x80 <= status <= 0xFF:
            return self._drop()
        if status < 0xF0:
            return self._channel_message(msg, now)
        if status == SYSEX:
            return self._sysex(msg)
        return self._system_message(msg, now)

    def _drop(self) -> list[list[int]]:
        """A malformed message: counted, nothing sent."""
        self.dropped += 1
        return []

    def _install_due(self, now: float) -> None:
        if self._offer is not self._installed:
            self._maybe_install(now)

    def _channel_message(self, msg: Sequence[int], now: float) -> list[list[int]]:
        status = msg[0]
        kind = status & 0xF0
        if len(msg) != _CHANNEL_LENGTH[kind] or not 0 <= msg[1] <= 127 \
                or not 0 <= msg[-1] <= 127:
            return self._drop()
        self._install_due(now)
        channel = status & 0x0F
        config = self._config
        if kind in (NOTE_ON, NOTE_OFF):
            return self._note(config, msg, kind, channel, now)
        if kind == POLY_PRESSURE:
            return self._poly_pressure(config, msg, channel)
        if kind == CONTROL:
            return self._control(config, msg, channel, msg[1], msg[2])
        return [_as_list(msg)]

    def _note(self, config: _Config, msg: Sequence[int], kind: int, channel: int,
              now: float) -> list[list[int]]:
        key = (channel << 7) | msg[1]
        out: list[list[int]] = []
        pressed = kind == NOTE_ON and msg[2] > 0
        role = config.role[key]
        if role:
            self._follow_key(role, msg[1], pressed)
        if config.remap[key]:
            if pressed:
                self._down[key] = 1
                self._note_on(config, key, msg[1], msg[2], channel, now, out)
            else:
                self._down[key] = 0
                self._release(key, msg[2] if kind == NOTE_OFF else RELEASE_VELOCITY, out)
            return out
        if self._down[key]:
            # It went down remapped (the settings changed since): it stays the engine's key
            # until it comes up.
            self._down[key] = 0
            self._release(key, RELEASE_VELOCITY if pressed else msg[2], out)
            if not pressed:
                return out
        out.append(_as_list(msg))
        return out

    def _poly_pressure(self, config: _Config, msg: Sequence[int],
                       channel: int) -> list[list[int]]:
        """Aftertouch on a remapped key follows it to its note (dropped once that ended)."""
        key = (channel << 7) | msg[1]
        slot = self._held.get(key)
        if slot is not None:
            return [[POLY_PRESSURE | (slot >> 7), slot & 127, msg[2]]]
        if config.remap[key] or self._down[key]:
            return []
        return [_as_list(msg)]

    def _sysex(self, msg: Sequence[int]) -> list[list[int]]:
        if len(msg) < 2 or msg[-1] != SYSEX_END or not all(0 <= b < 0x80 for b in msg[1:-1]):
            return self._drop()
        return [_as_list(msg)]

    def _system_message(self, msg: Sequence[int], now: float) -> list[list[int]]:
        """Transport and other system messages: fed to the transport, passed on; Stop and
        System Reset end every note first."""
        status = msg[0]
        length = _SYSTEM_LENGTH.get(status)
        if length is None or len(msg) != length or not all(0 <= b < 0x80 for b in msg[1:]):
            return self._drop()
        self.transport.feed(msg, now)
        self._install_due(now)
        passed = _as_list(msg)
        if status in (STOP, SYSTEM_RESET):
            out: list[list[int]] = []
            self._end_all(out)
            out.append(passed)
            return out
        return [passed]

    def _control(self, config: _Config, msg: Sequence[int], channel: int, number: int,
                 value: int) -> list[list[int]]:
        action = config.cc_action[number]
        if action != _NONE and (config.cc_channel < 0 or channel == config.cc_channel):
            n_var = self._program.n_var
            if action == _REGENERATE:
                if value > 0:
                    self.regenerate_requests += 1
            elif action == _NEXT:
                if value > 0:
                    self.variation = (self.variation + 1) % n_var
            elif action == _PREVIOUS:
                if value > 0:
                    self.variation = (self.variation - 1) % n_var
            elif action == _SELECT:
                self.variation = value % n_var
            elif action == _PANIC and value > 0:
                out: list[list[int]] = []
                self._end_all(out)
                return out
            return []
        passed = _as_list(msg)
        if number in (ALL_SOUND_OFF, ALL_NOTES_OFF):
            self._follower.reset()            # the chord keys' note-offs may not come
            out = []
            self._end_all(out)
            out.append(passed)
            return out
        return [passed]

    def _note_on(self, config: _Config, key: int, note: int, velocity: int, channel: int,
                 now: float, out: list[list[int]]) -> None:
        """A remapped key goes down: the reference, in plain steps (handle's fast path must
        do the same). It leaves the span cache empty: the next fast-path note computes it."""
        self._forget_span()
        held = self._held
        if key in held:                       # a second note-on without a note-off
            self._release(key, RELEASE_VELOCITY, out)
        if config.mono and held:
            self._end_all(out)
        transport = self.transport
        beat = transport.beat_at(now)
        if beat is None:
            transport.ensure_running(now)
            beat = transport.beat_at(now)
            if beat is None:
                beat = 0.0
        program = self._program
        if config.anticipation:
            beat += config.anticipation * transport.tempo / 60.0
        pitch = self._follow_pitch(program, beat) if config.follow else -1
        if pitch < 0:
            abs_bar, bar, span = locate(program, beat)
            v = self._variation_in(config, program, abs_bar)
            phrase, pos = self._phrase_position(program, v, abs_bar, bar, span)
            pitch = phrase[pos % len(phrase)]
            if config.contour and self._last_key >= 0 and self._last_out >= 0 \
                    and note != self._last_key:
                pitch = self._contour_pick(program, v, bar, span, pos, pitch,
                                           1 if note > self._last_key else -1)
            self._pos = pos + 1
            if config.keys_register:
                pitch = self._to_keys(pitch, note)
        self._sound(config, NOTE_ON | channel, key, note, pitch, velocity, out)

    def _to_keys(self, pitch: int, note: int) -> int:
        """register: keys: the line moved by whole octaves toward the keys the player
        presses (a moving mean of the last few). The octave changes only when the line
        would sound more than KEYS_REACH semitones from that register, so the line's own
        intervals stay, bar after bar; the player's hand decides where it sounds."""
        centre = self._keys_centre
        centre = float(note) if centre < 0 else centre + KEYS_WEIGHT * (note - centre)
        self._keys_centre = centre
        shifted = pitch + 12 * self._octaves
        if abs(shifted - centre) > KEYS_REACH:
            self._octaves = round((centre - pitch) / 12)
            shifted = pitch + 12 * self._octaves
        while shifted > 127:
            shifted -= 12
        while shifted < 0:
            shifted += 12
        return shifted

    def _fast_chord_key(self, msg: Sequence[int], now: float, key: int, note: int,
                        status: int, velocity: int, role: int) -> list[list[int]]:
        """The fast path of a follow-mode chord or bass key: it names the chord (a table
        lookup) and passes through, as _note does."""
        if self._down[key] or self._offer is not self._installed:
            return self._handle(msg, now)
        if status >= NOTE_ON and velocity:
            if role == _CHORD:
                self._follower.chord_down(note)
            else:
                self._follower.bass_down(note)
        elif role == _CHORD:
            self._follower.chord_up(note)
        else:
            self._follower.bass_up(note)
        return [msg] if type(msg) is list else [list(msg)]

    def _fast_follow_note_on(self, msg: Sequence[int], now: float, config: _Config, key: int,
                             status: int, note: int, velocity: int) -> list[list[int]]:
        """The fast path of a remapped key's note-on in follow mode with no chart of the
        player's: the next note over the played chord (as _note_on does)."""
        follower = self._follower
        if follower.offered is None or self._offer is not self._installed \
                or self._program.chart.source != "<follow>":
            return self._handle(msg, now)
        self._down[key] = 1
        held = self._held
        out: list[list[int]] = []
        if held:
            if key in held:
                self._release(key, RELEASE_VELOCITY, out)
            if config.mono and held:
                self._end_all(out)
        pitch = follower.next_pitch(self._last_out)
        return self._sound(config, status, key, note, pitch, velocity, out)

    def _sound(self, config: _Config, status: int, key: int, note: int, pitch: int,
               velocity: int, out: list[list[int]] | None) -> list[list[int]]:
        """Sound `pitch` for the remapped key (note-on `status`, `note`): remember it for the
        key's note-off, re-strike it when another key holds it (poly), and return `out` with
        the messages added (a new list when `out` is None). Every path's note-on ends here."""
        slot = config.slot_base[status] + pitch
        ref = self._ref
        count = ref[slot]
        ref[slot] = count + 1
        self._held[key] = slot
        self._last_out = pitch
        self._last_key = note
        self.notes_remapped += 1
        on = config.on_status[status]
        if count:              # poly: another key holds it: strike it again
            if out is None:
                out = []
            out.append([on - 0x10, pitch, RELEASE_VELOCITY])
        if out is None:
            return [[on, pitch, velocity]]
        out.append([on, pitch, velocity])
        return out

    def _follow_key(self, role: int, note: int, pressed: bool) -> None:
        """Follow mode: a chord key or the bass goes down or up (it passes through too)."""
        follower = self._follower
        if role == follow_mode.CHORD:
            if pressed:
                follower.chord_down(note)
            else:
                follower.chord_up(note)
        elif pressed:
            follower.bass_down(note)
        else:
            follower.bass_up(note)

    def _follow_pitch(self, program: Program, beat: float) -> int:
        """Follow mode: the next note over the played chord, or -1 when the chart decides
        (with a chart: the played chord wins while it differs from the chart's; see
        live/follow.py). Without follow lines yet, the chart decides."""
        follower = self._follower
        if follower.offered is None:
            return -1
        if not follow_mode.is_follow_chart(program.chart):
            abs_bar, bar, span = locate(program, beat)
            spans = program.chart.bars[bar].chords
            chord = spans[span].chord if span < len(spans) else None
            starts = program.starts[bar]
            bar_beat = bar_start(program.bar_starts, abs_bar)
            end = bar_beat + starts[span + 1] if span + 1 < len(starts) \
                else bar_start(program.bar_starts, abs_bar + 1)
            if not follower.leads(follow_mode.chart_key(chord), end, beat):
                return -1
        return follower.next_pitch(self._last_out)

    def _waits(self, line: tuple[float, float, float, float, float], now: float) -> bool:
        """An offer is pending: is the position (from the transport's `line`) still inside
        the bar it waits in, as _maybe_install found it (so nothing is to be done)?"""
        if line[4] == _INF:                   # hold: stopped
            return False
        beat = beat_on(line, now)
        window = self._window
        offer = self._offer
        return offer is not None and window[0] == offer.seq and window[1] <= beat < window[2]

    def _forget_span(self) -> None:
        """Empty the span cache (a new bank, variation or settings; a reference-path note)."""
        self._lo = _INF
        self._hi = -_INF
        self._g = -1

    def _enter(self, config: _Config, beat: float) -> int:
        """The note-on at `beat` is not in the cached span: find its span (the next one in
        the form, from one tuple, else as _note_on does), make it the cached one and return
        the phrase position to play (0 on a new span, as _note_on decides)."""
        g = self._g
        if g >= 0 and self._span_config is config:
            g += 1
            recs = self._recs
            if g < len(recs):
                lo, hi, phrase, bar, span, near = recs[g]
                base = self._base
                lo += base
                hi += base
                if lo <= beat < hi:
                    # The next span: (bar, span) is another, so _note_on restarts the phrase.
                    self._phrase = phrase
                    self._length = len(phrase)
                    self._bar = self._bar0 + bar
                    self._span = span
                    self._fbar = bar
                    self._lo = lo
                    self._hi = hi
                    self._g = g
                    last = self._last_out
                    return near[last] if near is not None and last >= 0 else 0
        program = self._program
        abs_bar, bar, span = locate(program, beat)
        rep = abs_bar // program.n_bars
        v = self._variation_in(config, program, abs_bar)
        phrase, pos = self._phrase_position(program, v, abs_bar, bar, span)
        self._length = len(phrase)
        self._v = v
        self._fbar = bar
        if program.n_spans:
            g = program.first_span[bar] + span
            recs = program.recs[v]
            base = rep * program.form_len
            self._lo = base + recs[g][0]
            self._hi = base + recs[g][1]
            self._g = g
            self._recs = recs
            self._base = base
            self._bar0 = rep * program.n_bars
        else:
            self._forget_span()
        self._span_config = config
        return pos

    def _variation_in(self, config: _Config, program: Program, abs_bar: int) -> int:
        """The variation played in bar `abs_bar` (the selected one, rotated per form repeat
        with rotate_variations)."""
        if config.rotate:
            return (self._variation + abs_bar // program.n_bars) % program.n_var
        return self._variation % program.n_var

    def _phrase_position(self, program: Program, v: int, abs_bar: int, bar: int,
                         span: int) -> tuple[tuple[int, ...], int]:
        """The phrase of (v, bar, span) and the position in it to play: the next one while
        it is the span of the last note, else its start (an arpeggio: the tone nearest the
        last note). Makes it the current phrase."""
        phrase = program.phrases[v][bar][span]
        if phrase is self._phrase and abs_bar == self._bar and span == self._span:
            return phrase, self._pos
        self._phrase = phrase
        self._bar = abs_bar
        self._span = span
        if program.arpeggio[v][bar][span] and self._last_out >= 0:
            last = self._last_out
            return phrase, min(range(len(phrase)), key=lambda i: abs(phrase[i] - last))
        return phrase, 0

    def _contour_pick(self, program: Program, v: int, bar: int, span: int, pos: int,
                      own: int, direction: int) -> int:
        last = self._last_out
        if (own - last) * direction > 0:
            return own
        best = own
        best_move = (own - last) * direction       # <= 0 here
        best_ok = False
        for k in range(1, program.n_var):
            phrase = program.phrases[(v + k) % program.n_var][bar][span]
            cand = phrase[pos % len(phrase)]
            move = (cand - last) * direction
            if move > 0:
                if not best_ok or move < best_move:
                    best, best_move, best_ok = cand, move, True
            elif not best_ok and move > best_move:
                best, best_move = cand, move
        return best

    def _release(self, key: int, velocity: int, out: list[list[int]]) -> None:
        slot = self._held.pop(key, None)
        if slot is None:                      # note-off without note-on, or already ended
            return
        count = self._ref[slot] - 1
        if count <= 0:
            self._ref[slot] = 0
            out.append([NOTE_OFF | (slot >> 7), slot & 127, velocity])
        else:
            self._ref[slot] = count

    def _end_all(self, out: list[list[int]]) -> None:
        held = self._held
        if not held:
            return
        ref = self._ref
        for slot in held.values():
            if ref[slot] > 0:
                ref[slot] = 0
                out.append([NOTE_OFF | (slot >> 7), slot & 127, RELEASE_VELOCITY])
        held.clear()

    def _maybe_install(self, now: float) -> None:
        offer = self._offer
        if offer is None or offer is self._installed:
            return
        transport = self.transport
        beat = transport.beat_at(now) if transport.running else None
        if beat is not None:
            starts = self._program.bar_starts
            bar, start = bar_at(starts, beat)
            if self._offer_bar_seq != offer.seq:
                self._offer_bar_seq = offer.seq
                self._offer_bar = offer.bar if offer.bar is not None else bar
            if bar == self._offer_bar:         # a bar line (or a jump by SPP) swaps it in
                # handle's fast path waits too while the position stays in this bar
                self._window = (offer.seq, start, bar_start(starts, bar + 1))
                return
        program = offer.program
        if program.chart is not self._program.chart:
            transport.set_tempo(program.chart.tempo, now)
            transport.bar_starts = program.bar_starts
        self._retired.append(self._program)
        self._program = program
        self._installed = offer
        self._window = (0, 0.0, 0.0)
        self.variation %= program.n_var        # (forgets the span cache)
        self._phrase = None
        self._recs = ()
        self.swaps += 1
