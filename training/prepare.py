"""WJazzD (wjazzd.db table layout) -> solos -> documents in the model text format.

    python -m training.prepare --db ../shared/data/wjazzd/wjazzd-train.db --out runs/data

writes ``solos.jsonl`` (every usable solo: metadata, split, notes on a 12-ticks-a-beat
grid, the chord symbol at each onset), ``tokenizer/`` (the word-level tokenizer for
our profile), ``train.txt`` / ``valid.txt`` (the documents in the original key, to
read), and ``stats.json``.  Transposition into all keys happens when documents are
rendered (`documents(..., transpose=True)`), so pretrain and finetune render the same
solos in whatever text format their base model speaks (our profile, or llama-midi's).

Time: a note's onset is its metrical position from the database (beat index from the
``beats`` table + tatum/division), rounded to 1/12 beat: 12 is divisible by 2, 3, 4
and 6, so straight and swung eighths, triplets and sixteenths are exact.  Durations
come from the seconds in ``melody.duration`` scaled by the local beat length.

Documents: a solo is cut into chunks that start on a downbeat note (so time 0 of the
text is a bar line, as in generation) and that break at rests longer than the
profile's ``max_time`` (a clamped wait would put the chords out of step).  Each chunk
gets its own prompt line (style, key, tempo).
"""

from __future__ import annotations

import argparse
import bisect
import functools
import json
import random
import re
import sqlite3
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from melodyflowd.errors import UserError, run_reporting_user_errors
from melodyflowd.generate.textformat import (
    PITCH_NAMES,
    ChordMarker,
    ModelProfile,
    TextNote,
    format_document,
    marker_for,
)
from melodyflowd.music import theory
from melodyflowd.music.theory import Chord, ChordError, parse_chord

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = ROOT.parent / "shared" / "data" / "wjazzd" / "wjazzd-train.db"

TICKS_PER_BEAT = 12
MAX_TIME = 96                       # 2 bars of 4/4: longer waits end a chunk
PITCH_RANGE = (34, 100)             # transposed notes stay inside this (WJazzD: 36..97)
MAX_NOTES = 110                     # notes a document: <= ~512 tokens with markers
DEFAULT_VELOCITY = 80               # the copy has no loudness: every note gets this
DEFAULT_PROGRAM = 66                # GM tenor sax (0-based), for profiles with a program column
#: WJazzD instrument -> General MIDI program (0-based), for formats with a program column
GM_PROGRAMS = {"ss": 64, "as": 65, "ts": 66, "bs": 67, "tp": 56, "cor": 56, "tb": 57,
               "cl": 71, "bcl": 71, "fl": 73, "p": 0, "g": 26, "vib": 11, "b": 32, "ts-c": 66}
GENERIC_STYLE = "jazz"              # render_prompt's word for "no style given"
STYLES = {"BEBOP": "bebop", "COOL": "cool", "HARDBOP": "hardbop", "POSTBOP": "postbop",
          "SWING": "swing", "TRADITIONAL": "traditional", "FUSION": "fusion", "FREE": "free"}
FLAT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
SPLIT_SEED = 20240917
VALID_FRACTION = 0.1

#: The text format of the models trained here (see MODEL_CARD.md for why).
PROFILE = ModelProfile(
    name="melodyflow-wjazzd",
    prompt="{style} {key} {tempo}",
    header="",
    columns=("pitch", "duration", "wait"),
    time_unit="ticks",
    ticks_per_beat=TICKS_PER_BEAT,
    max_time=MAX_TIME,
    chord_markers=True,
    default_program=DEFAULT_PROGRAM,
    default_velocity=DEFAULT_VELOCITY,
)


@dataclass(frozen=True, slots=True)
class Note:
    onset: int            # ticks from the solo's first beat
    duration: int         # ticks, >= 1
    pitch: int
    chord: str            # WJazzD chord symbol sounding at the onset
    downbeat: bool        # onset exactly on a bar line


@dataclass(slots=True)
class Solo:
    melid: int
    performer: str
    title: str
    style: str            # lower-case STYLES value, or GENERIC_STYLE
    key_root: int | None  # pitch class, None when the database gives none usable
    key_minor: bool
    tempo: float          # quarter-note bpm
    lead_sheet: str       # solo_info.chord_changes
    notes: list[Note] = field(default_factory=list)
    instrument: str = ""  # solo_info.instrument: "ts", "as", "tp", ...
    split: str = "train"

    def to_json(self) -> dict:
        return {"melid": self.melid, "performer": self.performer, "title": self.title,
                "style": self.style, "key_root": self.key_root, "key_minor": self.key_minor,
                "tempo": self.tempo, "split": self.split, "lead_sheet": self.lead_sheet,
                "instrument": self.instrument,
                "notes": [[n.onset, n.duration, n.pitch, n.chord, int(n.downbeat)]
                          for n in self.notes]}

    @classmethod
    def from_json(cls, data: dict) -> Solo:
        notes = [Note(onset=o, duration=d, pitch=p, chord=c, downbeat=bool(b))
                 for o, d, p, c, b in data["notes"]]
        return cls(melid=data["melid"], performer=data["performer"], title=data["title"],
                   style=data["style"], key_root=data["key_root"], key_minor=data["key_minor"],
                   tempo=data["tempo"], lead_sheet=data.get("lead_sheet", ""), notes=notes,
                   split=data["split"], instrument=data.get("instrument", ""))


@dataclass(frozen=True, slots=True)
class Document:
    text: str
    melid: int
    style: str
    shift: int            # semitones of transposition
    notes: int


# -- reading the database ----------------------------------------------------------

_NOTE_RE = re.compile(r"^([A-Ga-g])([#b]*)$")
_LETTER_PC = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


def parse_key(text: str | None) -> tuple[int | None, bool]:
    """'Bb-maj' -> (10, False); 'C-min' / 'D-dor' -> minor; '' or '-chrom' -> (None, False)."""
    if not text:
        return None, False
    name, _, mode = text.partition("-")
    match = _NOTE_RE.match(name.strip())
    if not match or mode == "chrom":
        return None, False
    pc = _LETTER_PC[match.group(1).upper()]
    pc += match.group(2).count("#") - match.group(2).count("b")
    return pc % 12, mode in ("min", "dor", "aeol", "phry")


@functools.lru_cache(maxsize=4096)
def chord_of(symbol: str) -> Chord | None:
    """Parsed chord, or None for a symbol the theory module cannot read."""
    try:
        return parse_chord(symbol)
    except (ChordError, ValueError):
        return None


def _solo_notes(melody: Sequence[tuple], beats: Sequence[tuple]) -> list[Note]:
    """melody rows (onset, pitch, duration, division, bar, beat, tatum), beats rows
    (onset, bar, beat, chord) -> notes on the tick grid (beat i of the solo = tick 12 i)."""
    beat_onsets = [b[0] for b in beats]
    index = {(b[1], b[2]): i for i, b in enumerate(beats)}
    chords = [b[3] or "NC" for b in beats]
    bar_start = [b[2] == 1 for b in beats]
    notes: list[Note] = []
    for onset_s, pitch, duration_s, division, bar, beat, tatum in melody:
        i = index.get((bar, beat))
        if i is not None and division and tatum:
            frac = (tatum - 1) / division
        else:  # no metrical annotation: interpolate the onset on the beat grid
            i = max(0, min(len(beat_onsets) - 2, bisect.bisect_right(beat_onsets, onset_s) - 1))
            span = beat_onsets[i + 1] - beat_onsets[i]
            frac = min(max((onset_s - beat_onsets[i]) / span, 0.0), 0.999) if span > 0 else 0.0
        tick = i * TICKS_PER_BEAT + round(frac * TICKS_PER_BEAT)
        j = min(i, len(beat_onsets) - 2)
        period = beat_onsets[j + 1] - beat_onsets[j] if len(beat_onsets) > 1 else 0.5
        duration = max(1, round((duration_s or 0.0) / max(period, 1e-3) * TICKS_PER_BEAT))
        beat_index = min(tick // TICKS_PER_BEAT, len(chords) - 1)
        downbeat = tick % TICKS_PER_BEAT == 0 and bar_start[beat_index]
        notes.append(Note(onset=tick, duration=duration, pitch=int(pitch),
                          chord=chords[beat_index], downbeat=downbeat))
    notes.sort(key=lambda n: (n.onset, n.pitch))
    return notes


def load_solos(db_path: str | Path, *, limit: int | None = None) -> list[Solo]:
    """Every 4/4 solo with notes and beats, in melid order (the first `limit` only)."""
    path = Path(db_path)
    if not path.is_file():
        raise UserError("no such database; pass --db PATH to a wjazzd.db-layout SQLite file",
                        file=str(path))
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        infos = con.execute(
            "SELECT melid, performer, title, style, avgtempo, key, signature, chord_changes, "
            "instrument FROM solo_info ORDER BY melid").fetchall()
        solos: list[Solo] = []
        for melid, performer, title, style, tempo, key, signature, changes, instr in infos:
            if limit is not None and len(solos) >= limit:
                break
            if signature not in ("4/4", "") or not tempo:
                continue
            beats = con.execute("SELECT onset, bar, beat, chord, signature FROM beats "
                                "WHERE melid = ? ORDER BY onset", (melid,)).fetchall()
            if len(beats) < 8 or any(b[4] not in ("4/4", "", None) for b in beats):
                continue
            melody = con.execute(
                "SELECT onset, pitch, duration, division, bar, beat, tatum FROM melody "
                "WHERE melid = ? ORDER BY onset", (melid,)).fetchall()
            if not melody:
                continue
            root, minor = parse_key(key)
            solos.append(Solo(
                melid=melid, performer=performer or "", title=title or "",
                style=STYLES.get((style or "").upper(), GENERIC_STYLE), key_root=root,
                key_minor=minor, tempo=float(tempo), lead_sheet=changes or "",
                instrument=(instr or "").strip().lower(),
                notes=_solo_notes(melody, [b[:4] for b in beats])))
        return solos
    except sqlite3.DatabaseError as exc:
        raise UserError(f"not a wjazzd.db-layout database ({exc}); it needs the tables "
                        "solo_info, melody and beats", file=str(path)) from None
    finally:
        con.close()


def split_solos(solos: list[Solo], *, valid_fraction: float = VALID_FRACTION,
                seed: int = SPLIT_SEED) -> None:
    """Mark solos train/valid: by solo, never by note; the same seed gives the same split."""
    melids = sorted(s.melid for s in solos)
    random.Random(seed).shuffle(melids)
    n_valid = max(1, round(len(melids) * valid_fraction)) if len(melids) > 1 else 0
    valid = set(melids[:n_valid])
    for solo in solos:
        solo.split = "valid" if solo.melid in valid else "train"


def write_solos(solos: Iterable[Solo], path: Path) -> None:
    with path.open("w", encoding="utf-8") as out:
        for solo in solos:
            out.write(json.dumps(solo.to_json()) + "\n")


def read_solos(path: str | Path) -> list[Solo]:
    path = Path(path)
    if path.is_dir():
        path = path / "solos.jsonl"
    if not path.is_file():
        raise UserError("no solos.jsonl here; run `python -m training.prepare` first",
                        file=str(path))
    with path.open(encoding="utf-8") as lines:
        return [Solo.from_json(json.loads(line)) for line in lines if line.strip()]


# -- chunks and documents ----------------------------------------------------------

def chunk_notes(notes: Sequence[Note], *, max_notes: int = MAX_NOTES, min_notes: int = 8,
                max_wait: int = MAX_TIME) -> list[list[Note]]:
    """Cut a solo into runs that start on a downbeat note, end before a rest longer than
    max_wait ticks, and hold at most max_notes notes (cut at the last downbeat note)."""
    segments: list[list[Note]] = [[]]
    for i, note in enumerate(notes):
        segments[-1].append(note)
        if i + 1 < len(notes) and notes[i + 1].onset - note.onset > max_wait:
            segments.append([])
    chunks: list[list[Note]] = []
    for seg in segments:
        starts = [i for i, n in enumerate(seg) if n.downbeat]
        if not starts:
            continue
        start = starts[0]
        while start < len(seg):
            end = min(len(seg), start + max_notes)
            if end < len(seg):
                cut = [i for i in starts if start < i <= end]
                if cut:
                    end = cut[-1]
            chunk = seg[start:end]
            if len(chunk) >= min_notes:
                chunks.append(chunk)
            start = end
    return chunks


def marker_of(symbol: str, shift: int) -> str | None:
    chord = chord_of(symbol)
    if chord is None:
        return None
    if chord.root is None:
        return marker_for(chord)
    return marker_for(replace(chord, root=(chord.root + shift) % 12))


def key_name(root: int | None, minor: bool, rng: random.Random | None = None) -> str:
    """Prompt spelling of a key: 'Bb', 'F#m'; black keys spelled either way at random."""
    if root is None:
        return ""
    name = PITCH_NAMES[root]
    if "#" in name and (rng is None or rng.random() < 0.5):
        name = FLAT_NAMES[root]
    return name + ("m" if minor else "")


def render_chunk(notes: Sequence[Note], solo: Solo, profile: ModelProfile, *, shift: int = 0,
                 style: str | None = None, key: str | None = None) -> str:
    """One document: prompt, then a marker line at each chord change and one note a line."""
    tempo = solo.tempo
    program = GM_PROGRAMS.get(solo.instrument, profile.default_program)
    items: list[TextNote | ChordMarker] = []
    last: str | None = None
    for i, note in enumerate(notes):
        if profile.chord_markers:
            marker = marker_of(note.chord, shift)
            if marker is not None and marker != last:
                items.append(ChordMarker(marker))
                last = marker
        nxt = notes[i + 1].onset if i + 1 < len(notes) else note.onset + note.duration
        items.append(TextNote(
            pitch=note.pitch + shift,
            duration=max(1, _units(note.duration, tempo, profile)),
            wait=_units(nxt - note.onset, tempo, profile),
            velocity=profile.default_velocity, program=program))
    if key is None:
        key = key_name(None if solo.key_root is None else (solo.key_root + shift) % 12,
                       solo.key_minor)
    return format_document(items, profile, title=solo.title, style=style or solo.style,
                           key=key, tempo=solo.tempo)


def _units(ticks: int, tempo: float, profile: ModelProfile) -> int:
    if profile.time_unit == "ticks" and profile.ticks_per_beat == TICKS_PER_BEAT:
        return min(ticks, profile.max_time)
    return profile.to_units(ticks * 60000.0 / (tempo * TICKS_PER_BEAT), tempo)


def shifts_in_range(notes: Sequence[Note], lo: int = PITCH_RANGE[0],
                    hi: int = PITCH_RANGE[1]) -> list[int]:
    """One shift per key (12 at most): k or k-12 semitones, whichever keeps all pitches
    inside [lo, hi] (the one nearer 0 when both do); keys that fit neither are skipped."""
    low, high = min(n.pitch for n in notes), max(n.pitch for n in notes)
    out = []
    for k in range(12):
        fits = [s for s in (k, k - 12) if low + s >= lo and high + s <= hi]
        if fits:
            out.append(min(fits, key=abs))
    return out


def documents(solos: Iterable[Solo], profile: ModelProfile, *, split: str | None = None,
              transpose: bool = False, seed: int = 0, styles: Sequence[str] | None = None,
              prompt_dropout: float = 0.0, max_notes: int = MAX_NOTES) -> list[Document]:
    """Render solos as documents.

    transpose: every chunk in every key that keeps it in range (else the original key).
    prompt_dropout: chance that a document's style becomes the generic word and,
    independently, that its key is left out - so prompts without them still work.
    """
    rng = random.Random(seed)
    out: list[Document] = []
    for solo in solos:
        if split is not None and solo.split != split:
            continue
        if styles is not None and solo.style not in styles:
            continue
        for chunk in chunk_notes(solo.notes, max_notes=max_notes):
            for shift in (shifts_in_range(chunk) if transpose else [0]):
                style = solo.style
                key = key_name(None if solo.key_root is None else (solo.key_root + shift) % 12,
                               solo.key_minor, rng if transpose else None)
                if prompt_dropout and rng.random() < prompt_dropout:
                    style = GENERIC_STYLE
                if prompt_dropout and rng.random() < prompt_dropout:
                    key = ""
                text = render_chunk(chunk, solo, profile, shift=shift, style=style, key=key)
                out.append(Document(text=text, melid=solo.melid, style=solo.style,
                                    shift=shift, notes=len(chunk)))
    return out


def all_markers(solos: Iterable[Solo]) -> list[str]:
    """Every marker the data can produce, in all 12 transpositions, and every root with
    every scale the theory module knows (sorted)."""
    symbols = {n.chord for s in solos for n in s.notes}
    markers = {f"{name}:{'-'.join(scale.split())}" for name in PITCH_NAMES
               for scale in getattr(theory, "SCALES", {})}
    markers.add("NC")
    for symbol in symbols:
        for shift in range(12):
            marker = marker_of(symbol, shift)
            if marker is not None:
                markers.add(marker)
    return sorted(markers)


def prompt_words(solos: Iterable[Solo]) -> tuple[list[str], list[str]]:
    """(styles, keys) the prompts can contain, for the tokenizer's vocabulary."""
    styles = sorted({s.style for s in solos} | set(STYLES.values()) | {GENERIC_STYLE})
    keys = []
    for names in (PITCH_NAMES, FLAT_NAMES):
        for name in names:
            keys += [name, name + "m"]
    return styles, sorted(set(keys))


def prepare(db: str | Path, out: str | Path, *, limit: int | None = None,
            valid_fraction: float = VALID_FRACTION, seed: int = SPLIT_SEED,
            log=print) -> dict:
    """The whole step: read, split, write solos.jsonl, tokenizer/, train.txt, valid.txt."""
    from .tokenizer import build_tokenizer, save_tokenizer

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    solos = load_solos(db, limit=limit)
    if len(solos) < 2:
        raise UserError(f"only {len(solos)} usable solos in the database; need at least 2",
                        file=str(db))
    split_solos(solos, valid_fraction=valid_fraction, seed=seed)
    write_solos(solos, out / "solos.jsonl")
    symbols = Counter(n.chord for s in solos for n in s.notes)
    unparsed = sorted(sym for sym in symbols if chord_of(sym) is None)
    markers = all_markers(solos)
    styles, keys = prompt_words(solos)
    tokenizer = build_tokenizer(markers=markers, styles=styles, keys=keys)
    save_tokenizer(tokenizer, out / "tokenizer")
    for split in ("train", "valid"):
        docs = documents(solos, PROFILE, split=split)
        (out / f"{split}.txt").write_text("\n".join(d.text for d in docs), encoding="utf-8")
    train_docs = documents(solos, PROFILE, split="train", transpose=True, seed=seed)
    lengths = [len(tokenizer(d.text).input_ids) for d in train_docs[:2000]]
    stats = {
        "database": str(db), "solos": len(solos),
        "train_solos": sum(s.split == "train" for s in solos),
        "valid_solos": sum(s.split == "valid" for s in solos),
        "notes": sum(len(s.notes) for s in solos),
        "chord_symbols": len(symbols), "unparsed_symbols": unparsed,
        "notes_with_unparsed_chord": sum(symbols[s] for s in unparsed),
        "markers": len(markers), "vocab_size": len(tokenizer),
        "train_documents_all_keys": len(train_docs),
        "mean_tokens_per_document": round(sum(lengths) / max(1, len(lengths)), 1),
        "max_tokens_per_document": max(lengths, default=0),
        "styles": dict(Counter(s.style for s in solos)), "split_seed": seed,
    }
    (out / "stats.json").write_text(json.dumps(stats, indent=2) + "\n", encoding="utf-8")
    log(f"prepare: {stats['solos']} solos ({stats['train_solos']} train, "
        f"{stats['valid_solos']} valid), {stats['notes']} notes, {len(symbols)} chord symbols "
        f"-> {len(markers)} markers, vocabulary {len(tokenizer)}, "
        f"{len(train_docs)} training documents in all keys -> {out}")
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.prepare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", default=str(DEFAULT_DB), help="wjazzd.db-layout SQLite file")
    parser.add_argument("--out", default="runs/data", help="output directory")
    parser.add_argument("--limit", type=int, help="only the first N usable solos (for tests)")
    parser.add_argument("--valid-fraction", type=float, default=VALID_FRACTION)
    parser.add_argument("--seed", type=int, default=SPLIT_SEED, help="split seed")
    args = parser.parse_args(argv)
    return run_reporting_user_errors("prepare", prepare, args.db, args.out, limit=args.limit,
                                     valid_fraction=args.valid_fraction, seed=args.seed)


if __name__ == "__main__":
    sys.exit(main())
