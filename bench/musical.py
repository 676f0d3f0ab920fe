"""What the instrument plays under a human rhythm, against what the human played.

    python3 -m bench.musical [--solos 36] [--bars 32] [--draws 3] [--seed-base 0]
                             [--only NAME ...] [--try NAME=JSON ...] [--out docs] [--card DIR]

Over a fixed subset of the WJazzD validation solos (training/prepare.py's split, the
first --solos by melid), each solo becomes:
- a chart from its own beat-by-beat chords (the `beats` table; a chord span per run of
  equal symbols in a bar; symbols the theory module cannot read become NC), its first
  --bars bars from the first bar line (pickup beats are dropped);
- a take: the solo's rhythm as a MIDI file (onsets, durations and positions in the bar
  from the `melody` table as training/prepare.py puts them on the beat grid), the human's
  pitch as the key, velocity 80;
- for each configuration, --draws banks for that chart (the shipped 4 variations, each
  draw with its own seeds; cached) and `apply` (offline/apply.py: the daemon's engine
  with its default settings: the first variation plays); the numbers pool the draws.
The pitches that come out are compared with the human's on the same notes:

- JS distance (base 2) of the chord-relative pitch-class histogram and of the interval
  histogram (clipped to +-12), against the humans' over the same notes;
- share of notes inside the chord-scale; on strong notes (onset exactly on beat 1 or 3,
  or the first note after a chord change) the share of chord tones (the written chord:
  tensions written in the symbol count);
- repeated pitches (interval 0); short cycles: share of notes in a run of >= 6 notes
  that repeats with a period of 2 or 3 (and is not one repeated pitch);
- median pitch and 10-90 % range by instrument, against the human's;
- mean leap (semitones) at chord changes and at bar lines.

Generation runs in this process at 1 torch thread; banks are cached in
~/.cache/melodyflowd/bench-musical (keyed by configuration, solo and settings).
Writes OUT/musical.md, OUT/musical/*.png and bench/results/musical.json.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import mido

from melodyflowd.generate.metrical import RULES
from melodyflowd.music import instruments
from melodyflowd.music.chart import Bar, Chart, ChordSpan
from melodyflowd.music.instruments import pitch_range
from melodyflowd.music.theory import Chord, parse_chord
from melodyflowd.offline.apply import apply_performance
from melodyflowd.settings import EngineSettings, GenerationSettings
from training.histograms import js_distance
from training.prepare import DEFAULT_DB, TICKS_PER_BEAT, Solo, chord_of, load_solos, split_solos

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "musical.json"
CACHE = Path("~/.cache/melodyflowd/bench-musical").expanduser()
TPB = 480                               # MIDI ticks a beat in the takes
SCALE_TICKS = TPB // TICKS_PER_BEAT
INTERVAL_CLIP = 12
NC = parse_chord("NC")
HUMANS = "humans"
RANDOM = "random chord-scale notes"
DEFAULT = "shipped default"
PREVIOUS = "previous default (chord-scale, penalty 2, 55-84)"

# Configuration name -> changes to the shipped GenerationSettings (None: random notes).
CONFIGS: dict[str, dict | None] = {
    DEFAULT: {},
    "default, instrument of the solo": {"instrument": "solo"},
    "register: keys (octave follows the keys)": {"engine": {"register": "keys"}},
    PREVIOUS: {"scale": "chord-scale", "penalty": 2.0, "instrument": None, "low": 55,
               "high": 84},
    "scale: chord-scale": {"scale": "chord-scale"},
    "scale: pentatonic": {"scale": "pentatonic"},
    "scale: chord-tones": {"scale": "chord-tones"},
    "scale: chromatic": {"scale": "chromatic"},
    "unconstrained": {"scale": "chromatic", "low": 21, "high": 108, "trend_range": 127,
                      "instrument": None},
    "original (pentatonic + trend, hard)": {"scale": "pentatonic", "constraint": "hard",
                                            "instrument": None, "low": 55, "high": 84},
    RANDOM: None,
}
# WJazzD's instrument codes -> generation.instrument names.
INSTRUMENT_NAMES = {"ts": "tenor", "ts-c": "tenor", "as": "alto", "ss": "soprano",
                    "bs": "baritone", "tp": "trumpet", "cor": "cornet", "tb": "trombone",
                    "cl": "clarinet", "bcl": "clarinet", "g": "guitar", "p": "piano",
                    "vib": "vibes"}
# Readable names for WJazzD's instrument codes.
INSTRUMENTS = {"ts": "tenor", "as": "alto", "ss": "soprano", "bs": "baritone", "tp": "trumpet",
               "cor": "cornet", "tb": "trombone", "cl": "clarinet", "bcl": "bass clarinet",
               "g": "guitar", "p": "piano", "vib": "vibes"}


# -- the solos as charts and takes ----------------------------------------------------

@dataclass
class Case:
    """One solo, ready to play: its chart, its take and the human's notes."""

    solo: Solo
    chart: Chart
    take: mido.MidiFile
    onsets: list[float]                 # beats from the chart's start, a note each
    pitches: list[int]                  # what the human played
    instrument: str


def solo_chart(solo: Solo, beats: Sequence[tuple[int, int, str]], max_bars: int
               ) -> tuple[Chart, int] | None:
    """(chart, index of the beat row that is the chart's beat 0), or None when the solo has
    no whole bar. beats: (bar, beat, chord) rows in onset order."""
    first = next((i for i, (_bar, beat, _c) in enumerate(beats) if beat == 1), None)
    if first is None:
        return None
    bars: list[list[Chord]] = []
    current_bar = None
    for bar_number, _beat, symbol in beats[first:]:
        if bar_number != current_bar:
            if len(bars) == max_bars:
                break
            bars.append([])
            current_bar = bar_number
        if len(bars[-1]) < 4:
            bars[-1].append(chord_of(symbol or "NC") or NC)
    chart_bars = []
    for index, chords in enumerate(bars):
        chords += [chords[-1]] * (4 - len(chords))
        spans: list[ChordSpan] = []
        for beat, chord in enumerate(chords):
            if spans and spans[-1].chord.symbol == chord.symbol:
                last = spans[-1]
                spans[-1] = ChordSpan(chord=last.chord, start_beat=last.start_beat,
                                      beats=last.beats + 1.0)
            else:
                spans.append(ChordSpan(chord=chord, start_beat=float(beat), beats=1.0))
        chart_bars.append(Bar(index=index, section="", chords=tuple(spans)))
    if not chart_bars:
        return None
    chart = Chart(title=f"{solo.performer} - {solo.title}", tempo=solo.tempo, time=(4, 4),
                  key=None, style=None, bars=tuple(chart_bars),
                  source=f"wjazzd melid {solo.melid}")
    return chart, first


def solo_take(solo: Solo, first_beat: int, n_beats: int
              ) -> tuple[mido.MidiFile, list[float], list[int]]:
    """The solo's rhythm from beat row `first_beat` on, n_beats long: a type-0 MIDI file at
    the solo's tempo, a note-on/off per note (the human's pitch as the key, a note ends
    before the next begins), and the notes' onsets (beats) and pitches."""
    start = first_beat * TICKS_PER_BEAT
    notes = [n for n in solo.notes if start <= n.onset < start + n_beats * TICKS_PER_BEAT]
    notes.sort(key=lambda n: n.onset)
    kept = [n for i, n in enumerate(notes) if i == 0 or n.onset != notes[i - 1].onset]
    events: list[tuple[int, int, mido.Message]] = []
    for i, note in enumerate(kept):
        on = (note.onset - start) * SCALE_TICKS
        end = on + note.duration * SCALE_TICKS
        if i + 1 < len(kept):
            end = min(end, (kept[i + 1].onset - start) * SCALE_TICKS - 1)
        end = max(end, on + 1)
        events.append((on, 1, mido.Message("note_on", note=note.pitch, velocity=80)))
        events.append((end, 0, mido.Message("note_off", note=note.pitch, velocity=0)))
    events.sort(key=lambda e: (e[0], e[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(solo.tempo))])
    previous = 0
    for tick, _order, msg in events:
        track.append(msg.copy(time=tick - previous))
        previous = tick
    midi = mido.MidiFile(type=0, ticks_per_beat=TPB)
    midi.tracks.append(track)
    return midi, [(n.onset - start) / TICKS_PER_BEAT for n in kept], [n.pitch for n in kept]


def load_cases(db: str, n_solos: int, max_bars: int) -> list[Case]:
    """The first n_solos validation solos (by melid) with a chart and >= 16 notes."""
    solos = load_solos(db)
    split_solos(solos)
    valid = sorted((s for s in solos if s.split == "valid"), key=lambda s: s.melid)
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    cases = []
    try:
        for solo in valid:
            if len(cases) == n_solos:
                break
            rows = con.execute("SELECT bar, beat, chord FROM beats WHERE melid = ? "
                               "ORDER BY onset", (solo.melid,)).fetchall()
            made = solo_chart(solo, rows, max_bars)
            if made is None:
                continue
            chart, first = made
            take, onsets, pitches = solo_take(solo, first, len(chart.bars) * 4)
            if len(pitches) < 16:
                continue
            cases.append(Case(solo, chart, take, onsets, pitches,
                              INSTRUMENTS.get(solo.instrument, solo.instrument or "?")))
    finally:
        con.close()
    return cases


# -- playing them ---------------------------------------------------------------------

def note_on_pitches(midi: mido.MidiFile) -> list[int]:
    return [m.note for m in mido.merge_tracks(midi.tracks)
            if m.type == "note_on" and m.velocity > 0]


def cached_bank(key: dict, make: Callable[[], object]):
    """A bank from the cache, or make it and store it."""
    from melodyflowd.music.phrases import bank_from_json, bank_to_json

    CACHE.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]
    path = CACHE / f"{digest}.json"
    if path.is_file():
        try:
            return bank_from_json(json.loads(path.read_text()), source=str(path))
        except Exception:                       # a damaged cache file: make it again
            pass
    bank = make()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(bank_to_json(bank)))
    tmp.replace(path)
    return bank


def play_config(name: str, change: dict, cases: Sequence[Case], loaded, engine: EngineSettings,
                base: GenerationSettings, log=print, seed_base: int = 0) -> list[list[int]]:
    """Each case's output pitches (a note each of the human's) under one configuration;
    case i's bank has the seed seed_base + i."""
    from melodyflowd.generate.compose import compose_bank

    change = dict(change)
    engine = replace(engine, **change.pop("engine", {}))   # engine settings, not generation
    settings = replace(base, **change)
    fingerprint = {k: v for k, v in asdict(settings).items() if k != "cache_dir"}
    out = []
    t0 = time.monotonic()
    made = 0
    for i, case in enumerate(cases):
        seed = seed_base + i
        case_settings = replace(settings, seed=seed)
        if case_settings.instrument == "solo":        # each solo at its own instrument's
            case_settings = replace(case_settings, instrument=INSTRUMENT_NAMES.get(
                case.solo.instrument, "any"))

        def make(case=case, case_settings=case_settings):
            nonlocal made
            made += 1
            return compose_bank(case.chart, loaded, case_settings)

        key = {"melid": case.solo.melid, "bars": len(case.chart.bars), "seed": seed,
               "model": loaded.name, "settings": {**fingerprint, "seed": seed},
               "version": 1}
        if case_settings.scale == "metrical":
            key["rules"] = RULES          # metrical.py's rules changed: not the same bank
        if case_settings.instrument is not None:   # the register pull and the seams
            key["register"] = [instruments.CENTRE_SLACK, instruments.SEAM_RANGE,
                               instruments.SEAM_BEATS]
            if instruments.ARC_DEPTH:
                key["register"] += [instruments.ARC_DEPTH, instruments.ARC_BEATS]
        bank = cached_bank(key, make)
        played = note_on_pitches(apply_performance(case.take, case.chart, bank, engine))
        if len(played) != len(case.pitches):
            raise RuntimeError(f"{name}: melid {case.solo.melid}: {len(played)} notes out "
                               f"for {len(case.pitches)} in")
        out.append(played)
        if made and (i + 1) % 6 == 0:
            log(f"musical: {name}: {i + 1}/{len(cases)} ({time.monotonic() - t0:.0f} s)")
    log(f"musical: {name}: {len(cases)} solos, {made} banks generated, "
        f"{time.monotonic() - t0:.0f} s")
    return out


def random_pitches(cases: Sequence[Case], low: int, high: int, seed: int = 0
                   ) -> list[list[int]]:
    """Uniform chord-scale notes in low..high on each human note."""
    rng = random.Random(seed)
    out = []
    for case in cases:
        line = []
        for onset in case.onsets:
            chord = chord_at(case.chart, onset)
            scale = set(chord.scale) if chord.root is not None else set(range(12))
            line.append(rng.choice([p for p in range(low, high + 1) if p % 12 in scale]))
        out.append(line)
    return out


# -- measuring ------------------------------------------------------------------------

def chord_at(chart: Chart, onset: float) -> Chord:
    bar = int(onset // 4)
    return chart.bars[min(bar, len(chart.bars) - 1)].chord_at(onset - bar * 4)


@dataclass
class Context:
    """What the metrics need of each note, the same for every configuration."""

    chords: list[list[Chord]] = field(default_factory=list)
    strong: list[list[bool]] = field(default_factory=list)
    change: list[list[bool]] = field(default_factory=list)     # first note after a change
    barline: list[list[bool]] = field(default_factory=list)    # first note of a new bar
    seam: list[list[bool]] = field(default_factory=list)       # ... where a part begins
    instrument: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, cases: Sequence[Case], loaded=None) -> Context:
        """loaded: the model, whose context decides where a long chart's parts meet
        (compose.plan_segments); without it there are no seams."""
        from melodyflowd.generate.compose import plan_segments

        ctx = cls()
        for case in cases:
            seams = set() if loaded is None else \
                {seg.start for seg in plan_segments(case.chart, loaded)} - {0}
            chords = [chord_at(case.chart, t) for t in case.onsets]
            change = [i > 0 and chords[i].symbol != chords[i - 1].symbol
                      for i in range(len(chords))]
            on_beat = [abs(t - round(t)) < 1e-9 and round(t) % 2 == 0 for t in case.onsets]
            barline = [i > 0 and int(case.onsets[i] // 4) != int(case.onsets[i - 1] // 4)
                       for i in range(len(chords))]
            ctx.chords.append(chords)
            ctx.strong.append([a or b for a, b in zip(on_beat, change, strict=True)])
            ctx.change.append(change)
            ctx.barline.append(barline)
            ctx.seam.append([b and int(t // 4) in seams
                             for b, t in zip(barline, case.onsets, strict=True)])
            ctx.instrument.append(case.instrument)
        return ctx


def cycle_flags(line: Sequence[int]) -> list[bool]:
    """True for each note inside a run of >= 6 notes that repeats with period 2 or 3 (a run
    of one repeated pitch does not count: that is 'repeated pitches')."""
    flags = [False] * len(line)
    for period in (2, 3):
        i = period
        while i < len(line):
            if line[i] != line[i - period]:
                i += 1
                continue
            j = i
            while j < len(line) and line[j] == line[j - period]:
                j += 1
            start = i - period
            if j - start >= 6 and len(set(line[start:j])) > 1:
                for k in range(start, j):
                    flags[k] = True
            i = j
    return flags


def metrics(lines: Sequence[Sequence[int]], ctx: Context) -> dict:
    pc = [0] * 12
    iv = [0] * (2 * INTERVAL_CLIP + 1)
    in_scale = with_chord = strong_ct = strong_n = cycles = total = 0
    leaps_change: list[int] = []
    leaps_bar: list[int] = []
    leaps_seam: list[int] = []
    by_instrument: dict[str, list[int]] = defaultdict(list)
    for n, line in enumerate(lines):
        chords = ctx.chords[n]
        total += len(line)
        cycles += sum(cycle_flags(line))
        by_instrument[ctx.instrument[n]] += line
        for i, p in enumerate(line):
            chord = chords[i]
            if chord.root is not None:
                with_chord += 1
                in_scale += p % 12 in chord.scale
                pc[(p - chord.root) % 12] += 1
                if ctx.strong[n][i]:
                    strong_n += 1
                    strong_ct += p % 12 in chord.tones
            if i:
                d = p - line[i - 1]
                iv[max(-INTERVAL_CLIP, min(INTERVAL_CLIP, d)) + INTERVAL_CLIP] += 1
                if ctx.change[n][i]:
                    leaps_change.append(abs(d))
                if ctx.barline[n][i]:
                    leaps_bar.append(abs(d))
                if ctx.seam and ctx.seam[n][i]:
                    leaps_seam.append(abs(d))
    registers = {}
    for name, pitches in sorted(by_instrument.items()):
        qs = statistics.quantiles(pitches, n=10)
        registers[name] = {"notes": len(pitches), "median": statistics.median(pitches),
                           "p10": qs[0], "p90": qs[-1]}
    return {"notes": total, "pc_hist": pc, "interval_hist": iv,
            "in_scale": in_scale / max(1, with_chord),
            "strong_chord_tones": strong_ct / max(1, strong_n), "strong_notes": strong_n,
            "repeats": iv[INTERVAL_CLIP] / max(1, sum(iv)),
            "cycles": cycles / max(1, total),
            "leap_change": statistics.fmean(leaps_change) if leaps_change else 0.0,
            "leap_bar": statistics.fmean(leaps_bar) if leaps_bar else 0.0,
            "leap_seam": statistics.fmean(leaps_seam) if leaps_seam else 0.0,
            "seams": len(leaps_seam), "register": registers}


def compare(results: dict[str, dict]) -> dict[str, dict]:
    """The table: each configuration's numbers against the humans'."""
    human = results[HUMANS]
    table = {}
    for name, m in results.items():
        reg = m["register"]
        offsets = [abs(reg[k]["median"] - human["register"][k]["median"]) * reg[k]["notes"]
                   for k in reg]
        table[name] = {
            "js_pc": round(js_distance(m["pc_hist"], human["pc_hist"]), 4),
            "js_interval": round(js_distance(m["interval_hist"], human["interval_hist"]), 4),
            "in_scale": round(m["in_scale"], 4),
            "strong_chord_tones": round(m["strong_chord_tones"], 4),
            "repeats": round(m["repeats"], 4),
            "cycles": round(m["cycles"], 4),
            "median_offset": round(sum(offsets) / max(1, m["notes"]), 2),
            "range_width": round(sum((reg[k]["p90"] - reg[k]["p10"]) * reg[k]["notes"]
                                     for k in reg) / max(1, m["notes"]), 1),
            "leap_change": round(m["leap_change"], 2),
            "leap_bar": round(m["leap_bar"], 2),
            "leap_seam": round(m.get("leap_seam", 0.0), 2),
        }
    return table


def single_register_floor(human_register: dict[str, dict]) -> tuple[float, float]:
    """(pitch, offset): the one median pitch that comes nearest every instrument's human
    median (notes-weighted: their weighted median), and the median offset a line sitting
    exactly there for every instrument would still have."""
    medians = sorted((h["median"], h["notes"]) for h in human_register.values())
    total = sum(n for _, n in medians)
    seen, index = 0, 0
    while 2 * (seen + medians[index][1]) < total:
        seen += medians[index][1]
        index += 1
    pitch = medians[index][0]
    offset = sum(abs(m - pitch) * n for m, n in medians) / max(1, total)
    return pitch, round(offset, 2)


# -- the report -----------------------------------------------------------------------

COLUMNS = [("js_pc", "JS pitch class"), ("js_interval", "JS intervals"),
           ("in_scale", "in chord-scale"), ("strong_chord_tones", "chord tones on strong notes"),
           ("repeats", "repeated pitches"), ("cycles", "in short cycles"),
           ("median_offset", "median pitch off the human's (semitones)"),
           ("range_width", "10-90 % range (semitones)"),
           ("leap_change", "leap at chord changes"), ("leap_bar", "leap at bar lines"),
           ("leap_seam", "leap where parts meet")]
PERCENT = {"in_scale", "strong_chord_tones", "repeats", "cycles"}


def markdown(result: dict, plots: Sequence[str]) -> str:
    table = result["table"]
    head = "| configuration | " + " | ".join(c for _, c in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for name, row in table.items():
        cells = [f"{100 * row[k]:.1f} %" if k in PERCENT else f"{row[k]:g}" for k, _ in COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    reg_lines = ["| instrument | notes | human median (10-90 %) | "
                 + " | ".join(n for n in table if n != HUMANS) + " |",
                 "|" + "---|" * (len(table) + 2)]
    human_reg = result["metrics"][HUMANS]["register"]
    for inst, h in human_reg.items():
        cells = []
        for name in table:
            if name == HUMANS:
                continue
            r = result["metrics"][name]["register"][inst]
            cells.append(f"{r['median']:g} ({r['p10']:g}-{r['p90']:g})")
        reg_lines.append(f"| {inst} | {h['notes']} | {h['median']:g} ({h['p10']:g}-{h['p90']:g}) | "
                         + " | ".join(cells) + " |")
    seed_text = f"{result['seed_base']} + " if result.get("seed_base") else ""
    draws = result.get("draws", 1)
    return "\n".join([
        "# What the instrument plays under a human rhythm",
        "",
        f"`python3 -m bench.musical --solos {result['solos']} --bars {result['bars']} "
        f"--draws {draws}`: {result['solos']} WJazzD validation solos (the first by melid; "
        f"{result['notes']} notes, the first {result['bars']} bars of each), each played "
        "through `melodyflow apply` with the daemon's engine settings: the solo's own "
        f"beat-by-beat chords as the chart, the solo's rhythm as the take, {draws} bank(s) "
        "of 4 variations a solo, each played once (seed = "
        f"{seed_text}{DRAW_SEEDS} x the draw + the solo's index; the first variation "
        "plays), the draws pooled. Every "
        "number compares the pitches that come out with the pitches the human played on "
        "the same notes; the humans' row is the human line measured the same way. Model: "
        f"`{result['model']}`, no style adapter. Took {result['minutes']} min.",
        "",
        *lines,
        "",
        "- JS: Jensen-Shannon distance (base 2; 0 = the humans' histogram) of the pitch "
        "class relative to the chord root, and of the melodic interval (clipped to ±12).",
        "- Strong notes: onset exactly on beat 1 or 3, or the first note after a chord "
        "change; a chord tone is a tone of the written chord (written tensions included).",
        "- Short cycles: notes in a run of ≥ 6 that repeats with period 2 or 3.",
        "- Median pitch: per instrument, the offset from the human's median, weighted by "
        "notes. Range: per instrument, from the 10th to the 90th percentile of the "
        "pitches, weighted by notes. Leaps: mean absolute interval in semitones into the "
        "first note after a chord change / a bar line.",
        "- One register for every instrument: a line whose median sat at MIDI {:g} for "
        "every instrument (the pitch nearest all the instruments' medians) would still be "
        "{:g} semitones off. `instrument: any` does not know the instrument, so it can "
        "come below this only by chance (the tunes of one instrument's solos favour some "
        "keys).".format(*single_register_floor(result["metrics"][HUMANS]["register"])),
        "",
        "## Register by instrument (median pitch, 10-90 % range)",
        "",
        *reg_lines,
        "",
        *[f"![{Path(p).stem}]({p})" for p in plots],
        "",
    ])


def make_plots(result: dict, out_dir: Path, prefix: str) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    names = list(result["metrics"])
    written = []
    pcs = ["1", "b2", "2", "b3", "3", "4", "#4", "5", "b6", "6", "b7", "7"]
    fig, axes = plt.subplots(2, 1, figsize=(12, 7))
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        m = result["metrics"][name]
        for ax, hist, xs in ((axes[0], m["pc_hist"], range(12)),
                             (axes[1], m["interval_hist"],
                              range(-INTERVAL_CLIP, INTERVAL_CLIP + 1))):
            total = sum(hist) or 1
            ax.bar([x + (k - len(names) / 2) * width for x in xs], [h / total for h in hist],
                   width=width, label=name, color="black" if name == HUMANS else None)
    axes[0].set_xticks(range(12), pcs)
    axes[0].set_title("pitch class relative to the chord root")
    axes[1].set_title("melodic interval (semitones)")
    axes[0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    path = out_dir / f"{prefix}-histograms.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)

    table = result["table"]
    keys = ["js_pc", "js_interval", "in_scale", "strong_chord_tones", "repeats", "cycles"]
    fig, axes = plt.subplots(1, len(keys), figsize=(16, 4.5), sharey=True)
    for ax, key in zip(axes, keys, strict=True):
        values = [table[n][key] for n in names]
        ax.barh(range(len(names)), values,
                color=["black" if n == HUMANS else "#4a78b0" for n in names])
        ax.set_title(dict(COLUMNS)[key], fontsize=9)
        if key not in ("js_pc", "js_interval"):
            ax.axvline(table[HUMANS][key], color="black", linewidth=0.8, linestyle="--")
    axes[0].set_yticks(range(len(names)), names, fontsize=8)
    axes[0].invert_yaxis()
    fig.tight_layout()
    path = out_dir / f"{prefix}-metrics.png"
    fig.savefig(path, dpi=80)
    plt.close(fig)
    written.append(path)
    return written


# -- the run --------------------------------------------------------------------------

DRAW_SEEDS = 1000     # draw d's banks have the seeds seed_base + d * DRAW_SEEDS + solo index


def run(*, db: str = str(DEFAULT_DB), n_solos: int = 36, max_bars: int = 32,
        configs: dict[str, dict | None] | None = None, model: str | None = None,
        base: GenerationSettings | None = None, engine: EngineSettings | None = None,
        log=print, seed_base: int = 0, draws: int = 1) -> dict:
    """Every configuration over the solos, `draws` times with other seeds; the metrics pool
    the draws (each draw's lines against the same human lines)."""
    import torch

    from melodyflowd.generate.model import load_model

    torch.set_num_threads(1)
    started = time.monotonic()
    configs = CONFIGS if configs is None else configs
    base = base or GenerationSettings()
    engine = engine or EngineSettings()
    cases = load_cases(db, n_solos, max_bars)
    log(f"musical: {len(cases)} solos, {sum(len(c.pitches) for c in cases)} notes, "
        f"{draws} draw(s)")
    loaded = load_model(model)
    pooled = [case for _ in range(draws) for case in cases]
    ctx = Context.of(pooled, loaded)
    lines: dict[str, list[list[int]]] = {HUMANS: [c.pitches for c in pooled]}
    for name, change in configs.items():
        if change is None:
            low, high, _centre = pitch_range(base.instrument, base.low, base.high)
            lines[name] = random_pitches(pooled, low, high)
            continue
        lines[name] = []
        for draw in range(draws):
            lines[name] += play_config(name, change, cases, loaded, engine, base, log,
                                       seed_base + draw * DRAW_SEEDS)
    results = {name: metrics(group, ctx) for name, group in lines.items()}
    return {"solos": len(cases), "bars": max_bars, "notes": sum(len(c.pitches) for c in cases),
            "melids": [c.solo.melid for c in cases], "model": loaded.name,
            "seed_base": seed_base, "draws": draws,
            "metrics": results, "table": compare(results),
            "minutes": round((time.monotonic() - started) / 60, 1)}


def write_report(result: dict, out: Path, name: str = "musical") -> Path:
    plots = make_plots(result, out / name, name)
    text = markdown(result, [str(p.relative_to(out)) for p in plots])
    target = out / f"{name}.md"
    target.write_text(text, encoding="utf-8")
    return target


def write_card_section(report: Path, card_dir: Path) -> Path:
    """The report as the model card's section (card_dir/musical.md, links rewritten from
    the card's folder), then the card written again (training/card.py)."""
    import os.path

    from training.card import write_model_card

    prefix = os.path.relpath(report.parent.resolve(), card_dir.resolve())
    text = report.read_text(encoding="utf-8").replace("](", f"]({prefix}/")
    (card_dir / "musical.md").write_text(text, encoding="utf-8")
    return write_model_card(card_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m bench.musical",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", default=os.environ.get("MELODYFLOW_WJAZZD", str(DEFAULT_DB)),
                        help="the WJazzD SQLite file (default: $MELODYFLOW_WJAZZD, or "
                        "training/prepare.py's default beside the clone)")
    parser.add_argument("--solos", type=int, default=36)
    parser.add_argument("--bars", type=int, default=32)
    parser.add_argument("--out", default=str(ROOT / "docs"))
    parser.add_argument("--only", nargs="*", help="configurations to run (default: all)")
    parser.add_argument("--try", dest="tries", nargs="*", default=[],
                        help='more configurations: NAME=JSON, e.g. \'wide={"low": 50}\'; '
                        'the key "engine" holds engine settings: {"engine": {"register": '
                        '"keys"}}')
    parser.add_argument("--seed-base", type=int, default=0,
                        help="solo i's bank has the seed SEED_BASE + i (another draw of "
                        "every bank: how much of a difference is chance)")
    parser.add_argument("--draws", type=int, default=3,
                        help="banks a solo and configuration, each with other seeds; the "
                        "numbers pool them (one draw alone moves the seam leap by 2 "
                        "semitones)")
    parser.add_argument("--name", default="musical", help="report name: OUT/NAME.md")
    parser.add_argument("--card", help="also put the report into this model dir's card")
    args = parser.parse_args(argv)
    configs = {k: v for k, v in CONFIGS.items() if not args.only or k in args.only}
    for item in args.tries:
        name, _, text = item.partition("=")
        configs[name] = json.loads(text)
    result = run(db=args.db, n_solos=args.solos, max_bars=args.bars, configs=configs,
                 log=lambda s: print(s, file=sys.stderr, flush=True),
                 seed_base=args.seed_base, draws=args.draws)
    results = RESULTS if args.name == "musical" else RESULTS.with_name(f"{args.name}.json")
    results.write_text(json.dumps(result, indent=1) + "\n")
    target = write_report(result, Path(args.out), args.name)
    if args.card:
        write_card_section(target, Path(args.card))
    for name, row in result["table"].items():
        print(f"{name:40s} " + " ".join(f"{k}={v}" for k, v in row.items()))
    print(f"wrote {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
