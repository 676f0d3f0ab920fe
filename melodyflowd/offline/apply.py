"""`melodyflow apply`: the instrument, offline. A recorded performance (a MIDI file) goes
through the same engine, with the same settings, as the daemon would play it live.

The file plays the part of a DAW that sends the performance and MIDI clock: tick 0 of the
file is beat 1 of `start_bar` (Song Position Pointer + Continue, or Start for bar 1, then
24 clock ticks a quarter note placed by the file's tempo map), so the chart moves with the
file's tempo map as it would follow the DAW's clock. Every message of the file is handed
to `Engine.handle` at its time on that clock, in file order; what the engine answers is
written at the same tick, in the same track. So every note the engine does not remap
(another channel, below the split) and every other event comes out unchanged, and meta
events (tempo, names, markers) are copied. The file's own clock and transport messages,
if it has any, are copied too but not fed to the engine (the tempo map is the clock).
Notes the engine still holds at the end get their note-offs at the last tick.

Deterministic for a bank (and so for a seed: the bank is generated, or taken from the
cache, exactly as `melodyflow render` does).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import mido

from melodyflowd.errors import UserError
from melodyflowd.live.engine import Engine
from melodyflowd.live.transport import CLOCK, CONTINUE, PPQN, SONG_POSITION, START, Transport

if TYPE_CHECKING:
    from melodyflowd.live.follow import FollowProgram
    from melodyflowd.music.chart import Chart
    from melodyflowd.music.phrases import PhraseBank
    from melodyflowd.settings import EngineSettings, Settings

DEFAULT_TEMPO = 500000                 # microseconds a quarter note, MIDI's default (120 bpm)
_TRANSPORT_TYPES = frozenset({"clock", "start", "continue", "stop", "songpos",
                              "song_select", "active_sensing", "reset"})


@dataclass(frozen=True, slots=True)
class TempoMap:
    """Seconds at a file tick, from the set_tempo events of all tracks (type 0 and 1)."""

    ticks: tuple[int, ...]             # tick of each tempo segment's start
    seconds: tuple[float, ...]         # seconds at that tick
    tempos: tuple[int, ...]            # microseconds a quarter note from there on
    ticks_per_beat: int

    @classmethod
    def of(cls, midi: mido.MidiFile) -> TempoMap:
        changes: dict[int, int] = {}
        for track in midi.tracks:
            tick = 0
            for msg in track:
                tick += msg.time
                if msg.type == "set_tempo":
                    changes[tick] = msg.tempo          # the later of two at one tick wins
        ticks, seconds, tempos = [0], [0.0], [changes.pop(0, DEFAULT_TEMPO)]
        for tick in sorted(changes):
            seconds.append(seconds[-1] + (tick - ticks[-1]) * tempos[-1]
                           / 1e6 / midi.ticks_per_beat)
            ticks.append(tick)
            tempos.append(changes[tick])
        return cls(tuple(ticks), tuple(seconds), tuple(tempos), midi.ticks_per_beat)

    def time_at(self, tick: float) -> float:
        i = max(0, bisect.bisect_right(self.ticks, tick) - 1)
        return self.seconds[i] + (tick - self.ticks[i]) * self.tempos[i] / 1e6 \
            / self.ticks_per_beat


def start_messages(start_bar: int, chart: Chart) -> list[list[int]]:
    """What a DAW sends to start playback at beat 1 of `start_bar` (1-based; every bar at
    its own meter's length, the form looping)."""
    if start_bar <= 1:
        return [[START]]
    sixteenths = round(chart.bar_start(start_bar - 1) * 4)
    if sixteenths > 0x3FFF:
        raise UserError(f"--start-bar {start_bar} is beyond what MIDI's Song Position "
                        "Pointer can reach (16383 sixteenths)")
    return [[SONG_POSITION, sixteenths & 0x7F, sixteenths >> 7], [CONTINUE]]


def apply_performance(midi: mido.MidiFile, chart: Chart, bank: PhraseBank,
                      settings: EngineSettings, start_bar: int = 1,
                      follow: FollowProgram | None = None) -> mido.MidiFile:
    """The performance `midi` played through a fresh Engine on `chart` and `bank` with
    `settings`: a new MidiFile of the same type, resolution and tracks (see module doc).
    `follow`: follow mode's tables (live.follow.build_follow), as the daemon offers them."""
    if midi.type == 2:
        raise UserError("a type 2 MIDI file (independent sequences) has no single timeline; "
                        "give a type 0 or type 1 file")
    if start_bar < 1:
        raise UserError(f"--start-bar must be 1 or more, got {start_bar}")
    transport = Transport(chart.tempo, chart.beats_per_bar)
    engine = Engine(settings, chart, bank, transport)
    if follow is not None:
        engine.offer_follow(follow)
    tempo_map = TempoMap.of(midi)
    tpb = midi.ticks_per_beat

    # Every event of every track on one timeline: (tick, track, index in track, message).
    events: list[tuple[int, int, int, mido.Message | mido.MetaMessage]] = []
    for t, track in enumerate(midi.tracks):
        tick = 0
        for i, msg in enumerate(track):
            tick += msg.time
            events.append((tick, t, i, msg))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    last_tick = events[-1][0] if events else 0

    out: list[list[tuple[int, mido.Message | mido.MetaMessage]]] = [[] for _ in midi.tracks]
    for msg in start_messages(start_bar, chart):
        engine.handle(msg, 0.0)
    clock_step = tpb / PPQN            # file ticks between two MIDI clock ticks
    n_clock = 0                        # clock ticks sent so far
    note_track = 0                     # the track of the last note: owed note-offs go there
    for tick, t, _i, msg in events:
        # The clock runs up to this event first (a tick at the same time comes first, as a
        # DAW sends the beat's clock before the notes on that beat).
        while n_clock * clock_step <= tick:
            engine.handle([CLOCK], tempo_map.time_at(n_clock * clock_step))
            n_clock += 1
        if msg.is_meta or msg.type in _TRANSPORT_TYPES:
            out[t].append((tick, msg))
            continue
        if msg.type in ("note_on", "note_off"):
            note_track = t
        for data in engine.handle(msg.bytes(), tempo_map.time_at(tick)):
            out[t].append((tick, mido.Message.from_bytes(data)))
    # Notes still held at the end (the file ended a note-off short): end them.
    for data in engine.panic():
        out[note_track].append((last_tick, mido.Message.from_bytes(data)))

    result = mido.MidiFile(type=midi.type, ticks_per_beat=tpb, charset=midi.charset)
    for events_of_track in out:
        track = mido.MidiTrack()
        previous = 0
        end_of_track = None
        for tick, msg in events_of_track:
            if msg.type == "end_of_track":
                end_of_track = (tick, msg)
                continue
            track.append(msg.copy(time=tick - previous))
            previous = tick
        if end_of_track is not None:
            tick = max(previous, end_of_track[0])
            track.append(end_of_track[1].copy(time=tick - previous))
        result.tracks.append(track)
    return result


def read_midi(path: str) -> mido.MidiFile:
    """A MIDI file, or a UserError naming it."""
    try:
        return mido.MidiFile(path, clip=True)
    except FileNotFoundError:
        raise UserError("MIDI file not found", file=path) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc}", file=path) from None
    except (ValueError, EOFError, KeyError, IndexError) as exc:
        raise UserError(f"not a standard MIDI file ({exc})", file=path) from None


def apply_file(settings: Settings, in_file: str, out_file: str, *, start_bar: int = 1,
               progress: Callable[[str], None] | None = None) -> Path:
    """`melodyflow apply`: read `in_file`, play it through the engine with a bank (the
    settings' `phrases` file, else one generated as `render` does), write `out_file`
    atomically. Returns the path written. In follow mode (settings.engine.follow) the
    follow lines come from the generator and its cache as the daemon's do (the cache's
    latest for these inputs; written when there is none), and without a chart the first
    of them is the chart."""
    from melodyflowd.music.phrases import check_bank_for_chart, load_bank
    from melodyflowd.music.sources import load_chart
    from melodyflowd.offline.render import _atomic, _StderrProgress, generate_bank

    target = Path(out_file)
    if target.suffix.lower() not in (".mid", ".midi"):
        raise UserError(f"unknown output type {target.suffix or '(none)'!r}; apply writes "
                        ".mid", file=out_file)
    follow = settings.engine.follow
    if settings.chart is None and not follow:
        raise UserError("no chart given: pass --chart song.yaml, or --follow to play over "
                        "the chords the recording holds")
    if not target.parent.is_dir():
        raise UserError(f"cannot write here: the folder {str(target.parent)!r} does not exist",
                        file=out_file)
    midi = read_midi(in_file)
    progress = progress or _StderrProgress()
    chart = load_chart(settings.chart, settings.tune) if settings.chart else None
    program = None
    if follow:
        from melodyflowd.live.follow import build_follow, line_floor
        from melodyflowd.music.follow import follow_charts

        charts = follow_charts(style=chart.style if chart is not None else None)
        lines = [generate_bank(settings, progress, c, fresh=False) for c in charts]
        program = build_follow(lines[0], charts[0], chart.key if chart is not None else None,
                               more=list(zip(lines[1:], charts[1:], strict=True)),
                               floor=line_floor(settings.engine))
    if chart is None:
        chart, bank = charts[0], lines[0]
    elif settings.phrases is not None:
        bank = load_bank(settings.phrases)
        check_bank_for_chart(bank, chart, source=settings.phrases)
    else:
        bank = generate_bank(settings, progress)
    result = apply_performance(midi, chart, bank, settings.engine, start_bar, program)
    with _atomic(target) as handle:
        result.save(file=handle)
    return target
