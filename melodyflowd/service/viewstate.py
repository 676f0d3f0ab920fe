"""What the live view shows, read from the engine by the main loop. Pure: no I/O, no clock.

`chart_layout(chart)` is the lead sheet (bars, sections, chord spans), sent when a page
connects and when the chart changes. `Watcher.look(...)`, called once a main-loop turn,
reads the engine's public state (transport position, variation, program, counters and
`cursor()`) and returns a new state for the page only when something the page shows has
changed (bar, chord, beat, variation, bank; notes played at most every NOTES_EVERY),
else None: so a page costs the loop a few attribute reads most turns and the pages a
message a beat, and a few more while notes are played.

The engine is read, never written, from the main loop's thread; the MIDI callback pays
nothing for it. "Last notes played" is sampled each turn (the pitch of the last note and
the notes sounding): keys struck within one turn (20 ms) of each other and released
within it show as one note; `played_count` is the exact count.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from typing import TYPE_CHECKING, Any

from melodyflowd.live.engine import locate

if TYPE_CHECKING:
    from melodyflowd.live.engine import Engine, Program
    from melodyflowd.music.chart import Chart

PLAYED_KEPT = 16          # last notes played shown
BARS_AHEAD = 2            # bars of the line on the piano roll: the current and the next
NOTES_EVERY = 0.1         # s; notes played alone make a new state at most this often


def chart_layout(chart: Chart) -> dict[str, Any]:
    """The lead sheet: title, tempo, time, and per bar its section and chord spans (with
    the alternate written above a chord; `empty`: a bar written `_`, its chord held)."""
    return {
        "title": chart.title or "",
        "tempo": chart.tempo,
        "time": list(chart.time),
        "key": chart.key,
        "bars": [{"section": bar.section, "empty": bar.empty,
                  "chords": [{"symbol": span.chord.symbol, "start": span.start_beat,
                              "beats": span.beats,
                              "alternate": span.alternate.symbol if span.alternate else None}
                             for span in bar.chords]}
                 for bar in chart.bars],
    }


def line_ahead(engine: Engine, program: Program, abs_bar: int,
               next_at: tuple[int, int, int, int] | None) -> list[dict[str, Any]]:
    """The notes of the line from the start of `abs_bar` through BARS_AHEAD bars, as the
    bank wrote them: for each, the bar offset (0 = this bar), onset beat in its bar, length
    in beats, pitch, whether a key pressed now would play it (`next_at`: Engine.upcoming),
    and whether it is borrowed (a span with no notes of this variation: the engine plays
    another variation's there, or the chord's tones, spread evenly here). A player who has
    gone past the written notes of a span plays the engine's continuation: its next note is
    shown after them."""
    bank = program.bank
    beats_per_ms = float(bank.tempo) / 60000.0
    out: list[dict[str, Any]] = []
    for offset in range(BARS_AHEAD):
        absolute = abs_bar + offset
        bar = absolute % program.n_bars
        v = engine.variation_at(absolute)
        starts = program.starts[bar]
        written = [_span_notes(bank.variations[(v + k) % program.n_var], starts, bar)
                   for k in range(program.n_var)]
        for span, phrase in enumerate(program.phrases[v][bar]):
            lo = starts[span]
            hi = starts[span + 1] if span + 1 < len(starts) else program.bar_len
            source = next((notes[span] for notes in written if notes[span]), [])
            borrowed = source is not written[0][span]
            if source and tuple(n.pitch for n in source) == phrase[:len(source)]:
                placed = [(n.beat, max(0.05, n.duration_ms * beats_per_ms), n.pitch, borrowed)
                          for n in source]
            else:                                  # the chord's tones, or the nearest bar's
                count = min(len(phrase), max(1, round(2 * (hi - lo))))
                step = max(hi - lo, 0.25) / count
                placed = [(lo + i * step, step * 0.9, phrase[i], True) for i in range(count)]
            ring = -1
            if next_at is not None and next_at[:3] == (absolute, span, v):
                ring = next_at[3]
                if ring >= len(placed):           # past the written notes: the continuation
                    beat = min(placed[-1][0] + 0.5, max(lo, hi - 0.25))
                    placed.append((beat, 0.45, phrase[ring % len(phrase)], True))
                    ring = len(placed) - 1
            for index, (beat, length, pitch, lent) in enumerate(placed):
                out.append({"bar": offset, "beat": round(beat, 3), "len": round(length, 3),
                            "pitch": pitch, "next": index == ring, "borrowed": lent})
    return out


def _span_notes(variation: Any, starts: tuple[float, ...], bar: int) -> list[list[Any]]:
    """A variation's notes of a bar, per chord span, in onset order (as build_program
    assigns them)."""
    notes = sorted(variation[bar % len(variation)].notes, key=lambda n: n.beat)
    spans: list[list[Any]] = [[] for _ in starts]
    for note in notes:
        spans[max(0, bisect_right(starts, note.beat + 1e-6) - 1)].append(note)
    return spans


class Watcher:
    """Turns the engine's state into the page's state, once a main-loop turn."""

    def __init__(self) -> None:
        self._key: tuple | None = None
        self._count = -1
        self._sent_count = -1             # notes played as of the last state returned
        self._sent_at = float("-inf")
        self._sounding: set[int] = set()
        self.played: deque[int] = deque(maxlen=PLAYED_KEPT)

    def look(self, engine: Engine | None, now: float, *, chart: Chart | None,
             status: str, bank_age: float, bank_source: str,
             controls: dict[str, bool]) -> dict[str, Any] | None:
        """The state when it differs from the last one returned, else None. `now` is on
        the engine's clock (perf_counter); `status` what the daemon is doing ("playing",
        "generating phrases 12/48"); `controls`: which buttons work."""
        if engine is None:                    # still writing the first bank
            key: tuple = ("starting", id(chart), status)
            if key == self._key:
                return None
            self._key = key
            return {"status": status, "chart_id": id(chart) if chart is not None else 0,
                    "position": None, "controls": dict.fromkeys(controls, False)}
        self._note_played(engine)
        program = engine.program
        transport = engine.transport
        settings = engine.settings
        selected = engine.variation % program.n_var
        rotate = bool(settings.rotate_variations)
        beat = transport.beat_at(now)
        if beat is None:
            abs_bar, bar, span, in_bar = 0, 0, 0, 0.0
        else:
            abs_bar, bar, span = locate(program, beat)
            in_bar = beat - abs_bar * program.bar_len
        variation = engine.variation_at(abs_bar)
        clock = ("waiting" if beat is None else "midi clock" if transport.clocked
                 else "internal clock" if transport.running else "stopped")
        tempo = float(transport.tempo)
        key = (id(program), status, clock, abs_bar, span, int(in_bar), variation, selected,
               engine.swaps, engine.pending, bank_source, tuple(sorted(controls.items())),
               id(engine.follow_chord) if settings.follow else None)
        if key == self._key and (self._count == self._sent_count
                                 or now - self._sent_at < NOTES_EVERY):
            return None
        self._key = key
        self._sent_count = self._count
        self._sent_at = now
        # Follow mode: the chord the hands hold may lead, and then the next note is not the
        # chart's: the roll shows the chart's line without a ring.
        follow = bool(settings.follow)
        held = engine.follow_chord if follow else None
        next_at = None if follow else engine.upcoming(now)
        return {
            "status": status,
            "chart_id": id(program.chart),
            "position": None if beat is None else {
                "abs_bar": abs_bar, "bar": bar, "span": span, "beat": round(in_bar, 3),
                "tempo": round(tempo, 2)},
            "clock": clock,
            "following": held.symbol if held is not None else None,
            "variation": variation,
            "selected": selected,
            "variations": program.n_var,
            "rotate": rotate,
            "bank": {"age": round(bank_age, 1), "source": bank_source,
                     "swaps": engine.swaps, "pending": bool(engine.pending)},
            "ahead": {"bars": [(abs_bar + k) % program.n_bars for k in range(BARS_AHEAD)],
                      "bar_len": program.bar_len,
                      "notes": line_ahead(engine, program, abs_bar, next_at)},
            "played": list(self.played),
            "played_count": engine.notes_remapped,
            "controls": controls,
        }

    def sample(self, engine: Engine | None) -> None:
        """A turn with no page open: keep up with the notes played; the next look()
        returns a state whatever changed (a page that connects gets one at once)."""
        if engine is not None:
            self._note_played(engine)
        self._key = None

    def _note_played(self, engine: Engine) -> None:
        count = engine.notes_remapped
        sounding = {pitch for _, pitch in engine.sounding()}
        if count != self._count:
            if self._count >= 0:
                new = sorted(sounding - self._sounding)
                last = engine.last_pitch
                if last >= 0:
                    if last in new:
                        new.remove(last)
                    new.append(last)
                self.played.extend(new[-max(1, count - self._count):])
            self._count = count
        self._sounding = sounding
