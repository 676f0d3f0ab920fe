"""Phrase, PhraseBank (immutable plain data), JSON read/write with validation, MIDI export.

A `PhraseBank` holds, for every bar of the form unrolled once, N variations of the
phrase the model wrote over that bar. It is plain data: the engine precomputes its
lookup tables from it, the generator writes it, `melodyflow render` exports it.

File format: BANK_FORMAT, the fields as `bank_to_json` writes them; `bank_from_json` reads
them, `load_bank` / `save_bank` for files. Every problem in a file is a `BankError` naming the
file, the JSON path of the bad field (`variations[1][3].notes[0].pitch`), the bad value
and what is accepted.

Beats are quarter-note beats, as `Chart.beats_per_bar` counts them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from melodyflowd.errors import UserError
from melodyflowd.files import BANK_MAX_BYTES, atomic_file, read_bytes
from melodyflowd.music.meter import bar_beats
from melodyflowd.numbers import JSON_DECIMALS, json_number, plain

if TYPE_CHECKING:
    import mido

    from melodyflowd.music.chart import Chart

BANK_FORMAT = "melodyflow-bank/1"
DENOMINATORS = (1, 2, 4, 8, 16, 32)
TICKS_PER_BEAT = 480


class BankError(UserError):
    """A phrase bank file that cannot be used: file, the bad field, what is accepted."""


@dataclass(frozen=True, slots=True)
class PhraseNote:
    pitch: int             # MIDI 0-127
    duration_ms: int
    wait_ms: int           # onset of this note -> onset of the next, as the model wrote it
    velocity: int          # 1-127 (the player's velocity replaces it when played live)
    beat: float            # onset in beats from the start of its bar
    chord: str             # symbol of the chord sounding at the onset


@dataclass(frozen=True, slots=True)
class BarPhrase:
    bar: int                          # index into PhraseBank.bars
    notes: tuple[PhraseNote, ...]


@dataclass(frozen=True, slots=True)
class BankChord:
    symbol: str
    start_beat: float
    beats: float


@dataclass(frozen=True, slots=True)
class BankBar:
    index: int
    chords: tuple[BankChord, ...]


@dataclass(frozen=True, slots=True)
class PhraseBank:
    title: str
    tempo: float
    time: tuple[int, int]
    bars: tuple[BankBar, ...]                       # form unrolled once, playing order
    variations: tuple[tuple[BarPhrase, ...], ...]   # [variation][bar]
    model: str = "default"
    adapter: str | None = None
    seed: int | None = None
    settings: dict = field(default_factory=dict)

    @property
    def n_variations(self) -> int:
        return len(self.variations)

    @property
    def beats_per_bar(self) -> float:
        """Length of a bar in quarter-note beats (6/8 -> 3.0)."""
        return bar_beats(self.time)


# ---------------------------------------------------------------------------------------------
# Chart -> bank bars
# ---------------------------------------------------------------------------------------------

def bank_bars(chart: Chart) -> tuple[BankBar, ...]:
    """The bank's `bars` for a chart: its form unrolled once, each bar's chord spans."""
    return tuple(
        BankBar(index=i, chords=tuple(BankChord(span.chord.symbol, float(span.start_beat),
                                                float(span.beats)) for span in bar.chords))
        for i, bar in enumerate(chart.bars))


# Notes one variation of a bank may hold in one bar (the generator writes at most 16).
MAX_NOTES_PER_BAR = 64


def check_bank_pitches(bank: PhraseBank, source: str = "<bank>", low: int | None = None,
                       high: int | None = None, constraint: str | None = None,
                       instrument: str | None = None) -> None:
    """Raise BankError when a bank written with the hard constraint holds a note outside
    the range it was written for: the instrument's register when one is named, else
    `low`..`high` (each, when not given, what the bank's own settings claim). The soft
    constraint makes other pitches unlikely, not impossible (a random model writes them all
    the time), so a soft bank promises no range to check."""
    from melodyflowd.music.instruments import REGISTERS

    claims = bank.settings
    low = low if low is not None else claims.get("low")
    high = high if high is not None else claims.get("high")
    constraint = constraint or claims.get("constraint")
    instrument = instrument or claims.get("instrument")
    if instrument in REGISTERS:
        low, high = REGISTERS[instrument].low, REGISTERS[instrument].high
    if constraint != "hard" or not isinstance(low, int) or not isinstance(high, int):
        return
    for v, row in enumerate(bank.variations):
        for phrase in row:
            for k, note in enumerate(phrase.notes):
                if not low <= note.pitch <= high:
                    raise BankError(
                        f"variations[{v}][{phrase.bar}].notes[{k}].pitch: {note.pitch} is "
                        f"outside the range the bank was written for ({low}..{high}, "
                        "hard constraint)", file=source)


def check_bank_for_chart(bank: PhraseBank, chart: Chart, source: str = "<bank>") -> None:
    """Raise BankError when a bank was not written for this chart (bars or chords differ)."""
    want = bank_bars(chart)
    if len(bank.bars) != len(want):
        raise BankError(f"the bank has {len(bank.bars)} bars but the chart "
                        f"{chart.source} has {len(want)}; write the bank for this chart "
                        "(melodyflow render --chart ... --out bank.json)", file=source)
    for got, expected in zip(bank.bars, want, strict=True):
        got_symbols = [c.symbol for c in got.chords]
        want_symbols = [c.symbol for c in expected.chords]
        if got_symbols != want_symbols:
            raise BankError(f"bars[{got.index}]: chords {' '.join(got_symbols)} but the chart "
                            f"{chart.source} has {' '.join(want_symbols)} in bar "
                            f"{got.index + 1}; write the bank for this chart", file=source)


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------

def bank_to_json(bank: PhraseBank) -> dict[str, Any]:
    """The bank as plain JSON data (json.dumps-able): format, chart, model, settings, bars
    with their chord spans, and variations[v][bar] as lists of notes."""
    return {
        "format": BANK_FORMAT,
        "chart": {"title": bank.title, "tempo": json_number(bank.tempo), "time": list(bank.time)},
        "model": bank.model,
        "adapter": bank.adapter,
        "seed": bank.seed,
        "settings": dict(bank.settings),
        "bars": [{"index": bar.index,
                  "chords": [{"symbol": c.symbol, "start_beat": json_number(c.start_beat),
                              "beats": json_number(c.beats)} for c in bar.chords]}
                 for bar in bank.bars],
        "variations": [
            [{"bar": phrase.bar,
              "notes": [{"pitch": n.pitch, "duration_ms": n.duration_ms, "wait_ms": n.wait_ms,
                         "velocity": n.velocity, "beat": round(float(n.beat), JSON_DECIMALS),
                         "chord": n.chord} for n in phrase.notes]}
             for phrase in variation]
            for variation in bank.variations],
    }


def _show(value: object) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class _Reader:
    """Checks one field at a time; every error names the source and the JSON path."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, value: object, accepted: str) -> BankError:
        where = f"{path}: " if path else ""
        return BankError(f"{where}{_show(value)} is not accepted; expected {accepted}",
                         file=self.source)

    def missing(self, path: str, key: str, accepted: str) -> BankError:
        where = f"{path}." if path else ""
        return BankError(f"{where}{key}: missing; expected {accepted}", file=self.source)

    def mapping(self, value: object, path: str, keys: dict[str, str],
                optional: Iterable[str] = ()) -> dict[str, Any]:
        """A JSON object with exactly `keys` (name -> what is accepted) plus `optional`."""
        if not isinstance(value, dict):
            raise self.fail(path, value, "a mapping with keys " + ", ".join(keys))
        allowed = set(keys) | set(optional)
        for key in value:
            if key not in allowed:
                where = f"{path}." if path else ""
                raise BankError(f"{where}{key}: unknown key; keys accepted here: "
                                + ", ".join([*keys, *optional]), file=self.source)
        for key, accepted in keys.items():
            if key not in value:
                raise self.missing(path, key, accepted)
        return value

    def list(self, value: object, path: str, what: str, nonempty: bool = True) -> list[Any]:
        if not isinstance(value, list) or (nonempty and not value):
            raise self.fail(path, value, f"a {'non-empty ' if nonempty else ''}list of {what}")
        return value

    def integer(self, value: object, path: str, low: int | None = None,
                high: int | None = None) -> int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok and ((low is not None and value < low) or (high is not None and value > high)):
            ok = False
        if not ok:
            raise self.fail(path, value, "a whole number" + _range(low, high))
        assert isinstance(value, int)
        return value

    def number(self, value: object, path: str, low: float | None = None,
               high: float | None = None, low_exclusive: bool = False) -> float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok:
            assert isinstance(value, int | float)
            too_low = low is not None and (value <= low if low_exclusive else value < low)
            too_high = high is not None and value > high
            ok = math.isfinite(value) and not too_low and not too_high
        if not ok:
            if low_exclusive and low is not None:
                accepted = f"a number greater than {plain(low)}"
                if high is not None:
                    accepted += f" and at most {plain(high)}"
            else:
                accepted = "a number" + _range(low, high)
            raise self.fail(path, value, accepted)
        return float(value)  # type: ignore[arg-type]

    def text(self, value: object, path: str, allow_empty: bool = False) -> str:
        if not isinstance(value, str) or (not allow_empty and not value.strip()):
            raise self.fail(path, value, "text" if allow_empty else "non-empty text")
        return value


def _range(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {plain(low)} to {plain(high)}"
    if low is not None:
        return f" of at least {plain(low)}"
    if high is not None:
        return f" of at most {plain(high)}"
    return ""


_TOP_KEYS = {"format": f'"{BANK_FORMAT}"', "chart": "a mapping: title, tempo, time",
             "bars": "a list of bars", "variations": "a list of variations"}
_TOP_OPTIONAL = ("model", "adapter", "seed", "settings")
_NOTE_KEYS = {"pitch": "a whole number from 0 to 127",
              "duration_ms": "a whole number of at least 1",
              "wait_ms": "a whole number of at least 0",
              "velocity": "a whole number from 1 to 127",
              "beat": "a number of at least 0", "chord": "a chord symbol"}


def bank_from_json(data: object, source: str = "<bank>") -> PhraseBank:
    """Validate JSON data (the bank_to_json shape) and build a PhraseBank. Raises BankError."""
    r = _Reader(source)
    top = r.mapping(data, "", _TOP_KEYS, _TOP_OPTIONAL)
    if top["format"] != BANK_FORMAT:
        raise r.fail("format", top["format"], f'"{BANK_FORMAT}" (a melodyflow phrase bank)')

    chart = r.mapping(top["chart"], "chart",
                      {"tempo": "a number greater than 0", "time": "[beats, unit], e.g. [4, 4]"},
                      ("title",))
    title = r.text(chart.get("title", ""), "chart.title", allow_empty=True)
    tempo = r.number(chart["tempo"], "chart.tempo", low=0, high=1000, low_exclusive=True)
    time = chart["time"]
    if (not isinstance(time, list) or len(time) != 2
            or not all(isinstance(t, int) and not isinstance(t, bool) for t in time)
            or not 1 <= time[0] <= 64 or time[1] not in DENOMINATORS):
        raise r.fail("chart.time", time, "[beats, unit] with beats 1-64 and unit one of "
                     + ", ".join(map(str, DENOMINATORS)) + ", e.g. [4, 4]")
    beats_per_bar = bar_beats(time)

    model = r.text(top.get("model", "default"), "model")
    adapter = top.get("adapter")
    if adapter is not None:
        adapter = r.text(adapter, "adapter")
    seed = top.get("seed")
    if seed is not None:
        seed = r.integer(seed, "seed", low=0)
    settings = top.get("settings", {})
    if not isinstance(settings, dict):
        raise r.fail("settings", settings, "a mapping of generation settings")

    bars: list[BankBar] = []
    for i, bar_data in enumerate(r.list(top["bars"], "bars", "bars")):
        path = f"bars[{i}]"
        bar = r.mapping(bar_data, path, {"index": f"{i} (bars are in playing order)",
                                          "chords": "a list of chords"})
        if r.integer(bar["index"], f"{path}.index") != i:
            raise r.fail(f"{path}.index", bar["index"], f"{i} (bars are in playing order)")
        chords: list[BankChord] = []
        for j, chord_data in enumerate(r.list(bar["chords"], f"{path}.chords", "chords")):
            cpath = f"{path}.chords[{j}]"
            chord = r.mapping(chord_data, cpath, {"symbol": "a chord symbol",
                                                   "start_beat": "a number of at least 0",
                                                   "beats": "a number greater than 0"})
            symbol = r.text(chord["symbol"], f"{cpath}.symbol")
            start = r.number(chord["start_beat"], f"{cpath}.start_beat", low=0,
                             high=beats_per_bar - 1e-9 if beats_per_bar > 0 else 0)
            beats = r.number(chord["beats"], f"{cpath}.beats", low=0, low_exclusive=True,
                             high=beats_per_bar + 1e-9)
            if chords and start < chords[-1].start_beat + 1e-9:
                raise r.fail(f"{cpath}.start_beat", chord["start_beat"],
                             f"a beat after {plain(chords[-1].start_beat)} (chords in order)")
            chords.append(BankChord(symbol, start, beats))
        bars.append(BankBar(i, tuple(chords)))

    variations: list[tuple[BarPhrase, ...]] = []
    for v, var_data in enumerate(r.list(top["variations"], "variations", "variations")):
        vpath = f"variations[{v}]"
        phrases = r.list(var_data, vpath, f"{len(bars)} bar phrases (one a bar)")
        if len(phrases) != len(bars):
            raise BankError(f"{vpath}: {len(phrases)} bar phrases; expected {len(bars)} "
                            "(one for each entry of bars)", file=source)
        row: list[BarPhrase] = []
        for b, phrase_data in enumerate(phrases):
            ppath = f"{vpath}[{b}]"
            phrase = r.mapping(phrase_data, ppath, {"bar": f"{b}", "notes": "a list of notes"})
            if r.integer(phrase["bar"], f"{ppath}.bar") != b:
                raise r.fail(f"{ppath}.bar", phrase["bar"], f"{b} (phrases in bar order)")
            notes: list[PhraseNote] = []
            listed = r.list(phrase["notes"], f"{ppath}.notes", "notes", nonempty=False)
            if len(listed) > MAX_NOTES_PER_BAR:
                raise BankError(f"{ppath}.notes: {len(listed)} notes in one bar; a bank holds "
                                f"at most {MAX_NOTES_PER_BAR} a bar", file=source)
            for k, note_data in enumerate(listed):
                npath = f"{ppath}.notes[{k}]"
                note = r.mapping(note_data, npath, _NOTE_KEYS)
                notes.append(PhraseNote(
                    pitch=r.integer(note["pitch"], f"{npath}.pitch", 0, 127),
                    duration_ms=r.integer(note["duration_ms"], f"{npath}.duration_ms", 1),
                    wait_ms=r.integer(note["wait_ms"], f"{npath}.wait_ms", 0),
                    velocity=r.integer(note["velocity"], f"{npath}.velocity", 1, 127),
                    beat=r.number(note["beat"], f"{npath}.beat", 0, beats_per_bar),
                    chord=r.text(note["chord"], f"{npath}.chord")))
            row.append(BarPhrase(b, tuple(notes)))
        variations.append(tuple(row))

    return PhraseBank(title=title, tempo=tempo, time=(time[0], time[1]), bars=tuple(bars),
                      variations=tuple(variations), model=model, adapter=adapter, seed=seed,
                      settings=dict(settings))


def load_bank(path: str | os.PathLike[str]) -> PhraseBank:
    """Read and validate a phrase bank file. Every problem is a BankError naming the file."""
    name = str(path)
    try:
        text = read_bytes(path, "the phrase bank", BANK_MAX_BYTES, BankError).decode("utf-8")
    except FileNotFoundError:
        raise BankError("phrase bank file not found; give a .json written by "
                        "`melodyflow render --out bank.json`", file=name) from None
    except OSError as exc:
        raise BankError(f"cannot read the phrase bank: {exc.strerror or exc}",
                        file=name) from None
    except UnicodeDecodeError:
        raise BankError("not a phrase bank: the file is not UTF-8 text (expected JSON)",
                        file=name) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BankError(f"not valid JSON: {exc.msg}", file=name, line=exc.lineno,
                        column=exc.colno) from None
    except RecursionError:
        raise BankError("not a phrase bank: nested too deeply (lists inside lists hundreds "
                        "of levels deep)", file=name) from None
    except ValueError as exc:                    # int() of a number too long to convert
        raise BankError(f"not a phrase bank: {str(exc).splitlines()[0][:80]}",
                        file=name) from None
    return bank_from_json(data, source=name)


def save_bank(bank: PhraseBank, path: str | os.PathLike[str]) -> Path:
    """Write the bank as JSON atomically (files.atomic_file): a reader never sees a
    half-written file; a crash leaves the old file (or none)."""
    target = Path(path)
    text = json.dumps(bank_to_json(bank), indent=1, ensure_ascii=False) + "\n"
    with atomic_file(target) as handle:
        handle.write(text.encode("utf-8"))
    return target


# ---------------------------------------------------------------------------------------------
# MIDI export
# ---------------------------------------------------------------------------------------------

def bank_to_midi(bank: PhraseBank, tracks: bool = False,
                 ticks_per_beat: int = TICKS_PER_BEAT) -> mido.MidiFile:
    """A type-1 MIDI file. Track 0 is the conductor: title, tempo, time signature, and
    markers: the chord symbol at every chord of every bar, "variation N" where a variation
    starts. Notes keep the model's velocity and duration (at the bank's tempo); a note cut
    by the next onset of the same pitch ends there.

    Default: the variations one after another on one track, as the form played N times
    (what plays back as a solo of N choruses). `tracks=True`: one track a variation
    (`tracks[1 + v]`, "variation v+1", each on its own channel, never the GM drum channel
    10), each from the start of the form, so a DAW shows them as parallel takes.
    """
    import mido

    bar_len = bank.beats_per_bar
    form = len(bank.bars) * bar_len
    midi = mido.MidiFile(type=1, ticks_per_beat=ticks_per_beat)

    def tick(beats: float) -> int:
        return max(0, round(beats * ticks_per_beat))

    conductor: list[tuple[int, int, mido.MetaMessage]] = [
        (0, 0, mido.MetaMessage("track_name", name=bank.title or "melodyflow", time=0)),
        (0, 0, mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bank.tempo), time=0)),
        (0, 0, mido.MetaMessage("time_signature", numerator=bank.time[0],
                                denominator=bank.time[1], time=0)),
    ]
    repeats = 1 if tracks else bank.n_variations
    for repeat in range(repeats):
        offset = repeat * form
        if not tracks:
            conductor.append((tick(offset), 1,
                              mido.MetaMessage("marker", text=f"variation {repeat + 1}")))
        for bar in bank.bars:
            for chord in bar.chords:
                conductor.append((tick(offset + bar.index * bar_len + chord.start_beat), 2,
                                  mido.MetaMessage("marker", text=chord.symbol)))
    midi.tracks.append(_to_track(conductor))

    beats_per_ms = bank.tempo / 60_000
    if not tracks:
        events: list[tuple[int, int, mido.Message]] = [
            (0, 0, mido.MetaMessage("track_name", name="phrases"))]
        notes = [note for v, variation in enumerate(bank.variations)
                 for note in _notes(variation, v * form, bar_len, beats_per_ms, tick)]
        _note_events(notes, 0, events)
        midi.tracks.append(_to_track(events))
        return midi
    for v, variation in enumerate(bank.variations):
        channel = v % 16 if v % 16 != 9 else 15      # keep clear of the GM drum channel
        events = [(0, 0, mido.MetaMessage("track_name", name=f"variation {v + 1}"))]
        _note_events(_notes(variation, 0.0, bar_len, beats_per_ms, tick), channel, events)
        midi.tracks.append(_to_track(events))
    return midi


def _notes(variation: Sequence[BarPhrase], offset: float, bar_len: float,
           beats_per_ms: float, tick: Callable[[float], int]) -> list[tuple[int, int, int, int]]:
    """(start, end, pitch, velocity) in ticks of one variation starting `offset` beats in."""
    ticks_per_beat = tick(1.0)
    notes = []
    for phrase in variation:
        bar_start = offset + phrase.bar * bar_len
        for n in phrase.notes:
            start = tick(bar_start + n.beat)
            end = start + max(1, round(n.duration_ms * beats_per_ms * ticks_per_beat))
            notes.append((start, end, n.pitch, n.velocity))
    return notes


def _note_events(notes: list[tuple[int, int, int, int]], channel: int, events: list) -> None:
    """Note-on/off events as (tick, order, message) added to `events`; a repeated pitch
    ends where its next onset begins (no overlaps)."""
    import mido

    next_onset: dict[int, int] = {}
    for start, end, pitch, velocity in sorted(notes, reverse=True):
        limit = next_onset.get(pitch)
        if limit is not None:
            end = min(end, limit)
        next_onset[pitch] = start
        if end <= start:
            continue
        # Sort key 2 for note-on, 1 for note-off: offs first at the same tick.
        events.append((start, 2, mido.Message("note_on", channel=channel, note=pitch,
                                               velocity=velocity)))
        events.append((end, 1, mido.Message("note_off", channel=channel, note=pitch,
                                             velocity=64)))


def _to_track(events: list) -> mido.MidiTrack:
    import mido

    track = mido.MidiTrack()
    now = 0
    for at, _order, msg in sorted(events, key=lambda e: (e[0], e[1])):
        track.append(msg.copy(time=at - now))
        now = at
    track.append(mido.MetaMessage("end_of_track", time=0))
    return track
