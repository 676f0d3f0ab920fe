"""Held notes -> the Chord a pianist would name. Pure, no I/O.

`recognize(pitches, previous=None, key=None)` reads the notes a left hand (or a DAW's
chord track, with its bass) holds and names the chord: root position and inversions,
shells (1-3-7, 1-7-3), rootless A and B voicings (3-5-7-9, 7-9-3-5), quartal and
upper-structure voicings, and slash chords (a triad over a bass that is not in it).
The answer is the same `Chord` that `theory.parse_chord` makes for the symbol, so the
chord-scale comes from one place.

How: every root (12) and chord quality (maj7, 6, m7, 7, 7sus4, m7b5, dim7, ...) is a
*reading* of the notes when its guide tones (third and seventh, or the whole triad) are
held and every other note is a chord tone or a tension the quality takes. Readings are
scored: chord tones held, tensions, the root held and in the bass; then the context:
the key (a chord diatonic to it) and the previous chord (ii -> V, V -> I, a tritone
substitute, the same chord revoiced). The best reading wins. Rootless voicings often spell
another chord in root position (F A B E is Fmaj7#11 and G13), and that is what the
context is for.

`RecognitionTable` is the same recognizer precomputed for the MIDI callback: the held
notes as one int (lowest pitch class << 12 | pitch-class mask) and the previous chord's
context index look up the answer in a dict and a tuple.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from melodyflowd.music.theory import Chord, parse_chord

ROOT_NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# Chord families, for the key and the previous chord.
MAJ, MIN, DOM, HDIM, DIM, SUS, AUG = range(7)
N_FAMILIES = 7
NO_CONTEXT = 12 * N_FAMILIES          # context index when there is no previous chord
N_CONTEXTS = NO_CONTEXT + 1
MAX_NOTES = 7                         # more distinct pitch classes than this is no chord


@dataclass(frozen=True, slots=True)
class Quality:
    """One chord quality as intervals from its root."""

    name: str
    family: int
    core: frozenset[int]          # root, third, fifth, seventh (or sixth)
    guide: frozenset[int]         # must be held (root excepted: rootless voicings)
    tensions: dict[int, float]    # tension interval -> how much it counts when held
    prior: float = 0.0            # less common qualities start lower


def _q(name: str, family: int, core: Iterable[int], guide: Iterable[int],
       tensions: dict[int, float] | None = None, prior: float = 0.0) -> Quality:
    return Quality(name, family, frozenset(core), frozenset(guide), tensions or {}, prior)


QUALITIES: tuple[Quality, ...] = (
    _q("maj7", MAJ, (0, 4, 7, 11), (4, 11), {2: 1.0, 6: 0.0, 9: 0.5}),
    _q("6", MAJ, (0, 4, 7, 9), (4, 9), {2: 1.0}, prior=-0.5),
    _q("", MAJ, (0, 4, 7), (0, 4, 7), {2: 1.0}),
    _q("m7", MIN, (0, 3, 7, 10), (3, 10), {2: 1.0, 5: 1.0, 9: 0.5, 8: 0.0, 1: 0.0}),
    _q("m6", MIN, (0, 3, 7, 9), (3, 9), {2: 1.0}, prior=-0.5),
    _q("m(maj7)", MIN, (0, 3, 7, 11), (3, 11), {2: 1.0, 5: 0.5, 9: 0.5}, prior=-1.0),
    _q("m", MIN, (0, 3, 7), (0, 3, 7), {2: 1.0}),
    _q("7", DOM, (0, 4, 7, 10), (4, 10),
       {2: 1.0, 9: 1.0, 1: 0.5, 3: 0.5, 6: 0.5, 8: 0.5}),
    _q("7sus4", SUS, (0, 5, 7, 10), (5, 10), {2: 1.0, 9: 0.5, 1: 0.0}),
    _q("sus4", SUS, (0, 5, 7), (0, 5, 7), {}, prior=-0.5),
    _q("m7b5", HDIM, (0, 3, 6, 10), (3, 6, 10), {2: 0.5, 5: 0.5, 8: 0.0, 1: 0.0}),
    _q("dim7", DIM, (0, 3, 6, 9), (3, 6, 9), {2: 0.0, 11: 0.0}, prior=-1.0),
    _q("dim", DIM, (0, 3, 6), (0, 3, 6), {}, prior=-0.5),
    _q("aug", AUG, (0, 4, 8), (0, 4, 8), {}, prior=-1.0),
    _q("maj7#5", AUG, (0, 4, 8, 11), (4, 8, 11), {2: 0.5, 6: 0.0}, prior=-1.0),
)

# Slash chords: a major or minor triad over a bass that is not in it, as a pianist hears
# them (triad root above the bass, minor?) -> the chord over the bass they stand for.
SLASH: dict[tuple[int, bool], str] = {
    (2, False): "maj7#11",      # D/C: C lydian
    (10, False): "9sus4",       # Bb/C
    (7, True): "9sus4",         # Gm/C
    (1, False): "7b9sus4",      # Db/C: C phrygian
    (6, False): "7(b9,#11)",    # F#/C: upper structure on C7
    (9, False): "13(b9)",       # A/C
    (4, False): "maj7#5",       # E/C
    (7, False): "maj9",         # G/C
}
SLASH_SCORE = 10.0             # as much as four chord tones and the root held
# Db/C is also Dbmaj7 over its seventh: the slash reading only where nothing else is.
SLASH_DOUBT = {(1, False): 1.0}

# Weights of the score (see the module docstring).
CORE = 2.0
ROOT_HELD = 2.0
ROOT_LOWEST = 2.0
DIATONIC = 2.0
RESOLVES = 6.0           # ii -> V, V -> I
DOWN_A_FIFTH = 2.0       # any other root motion down a fifth
DOMINANT_CHAIN = 4.0     # V/V -> V
TRITONE_SUB = 3.0        # V -> I a half step down, ii -> subV
SAME_CHORD = 3.0         # the same chord revoiced

# Diatonic (interval from the tonic, family) in major and minor keys.
_MAJOR_KEY = {(0, MAJ), (2, MIN), (4, MIN), (5, MAJ), (7, DOM), (7, SUS), (9, MIN),
              (11, HDIM)}
_MINOR_KEY = {(0, MIN), (2, HDIM), (3, MAJ), (5, MIN), (7, DOM), (7, SUS), (8, MAJ),
              (10, DOM), (11, DIM)}

_KEY_RE = re.compile(r"^\s*([A-G])([#b]?)\s*-?\s*(.*)$")
_LETTER = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


@dataclass(frozen=True, slots=True)
class Key:
    tonic: int               # pitch class
    minor: bool


def parse_key(text: str | None) -> Key | None:
    """A chart's key hint ("F", "Dm", "Bb-maj", "C minor", "D dorian") -> Key, or None."""
    if not text:
        return None
    match = _KEY_RE.match(text)
    if not match:
        return None
    letter, accidental, mode = match.groups()
    tonic = (_LETTER[letter] + {"#": 1, "b": -1, "": 0}[accidental]) % 12
    mode = mode.strip().lower()
    minor = text.strip().endswith("-") or mode.startswith(("m", "dor", "aeo", "phr")) \
        and not mode.startswith(("maj", "mix"))
    return Key(tonic, minor)


@dataclass(frozen=True, slots=True)
class Reading:
    """One way to name the held notes."""

    root: int
    quality: str                 # a QUALITIES name, or "/" for a slash chord
    family: int
    symbol: str
    score: float                 # without the context (previous chord)


def family_of(chord: Chord) -> int:
    """The family of any chord (one this module named or one from a chart)."""
    if chord.root is None:
        return MAJ
    iv = {(t - chord.root) % 12 for t in chord.tones}
    if 3 in iv and 6 in iv and 7 not in iv:
        return DIM if 9 in iv and 10 not in iv or 10 not in iv and 11 not in iv else HDIM
    if 3 in iv and 4 not in iv:
        return MIN
    if 4 not in iv and 5 in iv:
        return SUS
    if 10 in iv:
        return DOM
    if 8 in iv and 7 not in iv:
        return AUG
    return MAJ


def context_index(chord: Chord | None) -> int:
    """The previous chord as the table's context: root * 7 + family (NO_CONTEXT if none)."""
    if chord is None or chord.root is None:
        return NO_CONTEXT
    return chord.root * N_FAMILIES + family_of(chord)


def _dominant_symbol(tensions: frozenset[int], fifth: bool) -> str:
    flat9, sharp9, sharp11, flat13 = 1 in tensions, 3 in tensions, 6 in tensions, \
        8 in tensions
    if flat13 and (flat9 or sharp9):
        if flat9 and not sharp9 and not sharp11:
            return "7(b9,b13)"
        return "7alt"
    if flat9 or sharp9:
        alts = ",".join(a for a, on in (("b9", flat9), ("#9", sharp9), ("#11", sharp11))
                        if on)
        return ("13" if 9 in tensions else "7") + f"({alts})"
    if flat13:
        return "7(b13)" if fifth else "7#5"
    head = "13" if 9 in tensions else "9" if 2 in tensions else "7"
    return head + ("(#11)" if sharp11 else "")


# Qualities whose only tension in a symbol is the ninth: the name with it.
_WITH_NINTH = {"6": "6/9", "": "add9", "m6": "m6/9", "m(maj7)": "m(maj9)", "m": "m(add9)"}


def _suffix(quality: Quality, tensions: frozenset[int], intervals: frozenset[int]) -> str:
    """The symbol's suffix for a quality with these tensions held."""
    name = quality.name
    if name == "7":
        return _dominant_symbol(tensions, 7 in intervals)
    if name == "maj7":
        head = "maj9" if 2 in tensions else "maj7"
        if 6 in tensions:
            return head + "#11"
        return "maj13" if 9 in tensions and 2 in tensions else head
    if name in _WITH_NINTH:
        return _WITH_NINTH[name] if 2 in tensions else name
    if name == "m7":
        if 1 in tensions:
            return "m7b9"
        if 8 in tensions:
            return "m7(b13)"
        return "m11" if 5 in tensions else "m9" if 2 in tensions else "m7"
    if name == "7sus4":
        if 1 in tensions:
            return "7b9sus4"
        return "13sus4" if 9 in tensions else "9sus4" if 2 in tensions else "7sus4"
    if name == "m7b5":
        return "m7b5(b9)" if 1 in tensions else "m9b5" if 2 in tensions else "m7b5"
    if name == "maj7#5":
        return "maj7#5"
    return name


def readings(pcs: frozenset[int], lowest: int, key: Key | None = None) -> list[Reading]:
    """Every reading of a set of pitch classes with `lowest` in the bass, best first
    (context-free score; the key counts)."""
    out: list[Reading] = []
    n = len(pcs)
    if n < 2 or n > MAX_NOTES or lowest not in pcs:
        return out
    for root in range(12):
        intervals = frozenset((pc - root) % 12 for pc in pcs)
        held_root = 0 in intervals
        for quality in QUALITIES:
            if not quality.guide <= intervals:
                continue
            allowed = quality.core | quality.tensions.keys()
            if not intervals <= allowed:
                continue
            # A dyad is a reading only as the tritone of a dominant (3 and 7).
            if n == 2 and not (quality.name == "7" and intervals == {4, 10}):
                continue
            tensions = intervals - quality.core
            score = CORE * len(intervals & quality.core) + quality.prior
            score += sum(quality.tensions[t] for t in tensions)
            if held_root:
                score += ROOT_HELD
            if lowest == root:
                score += ROOT_LOWEST
            if key is not None and _diatonic(key, root, quality.family):
                score += DIATONIC
            symbol = ROOT_NAMES[root] + _suffix(quality, tensions, intervals)
            if held_root and lowest != root:
                symbol += "/" + ROOT_NAMES[lowest]          # an inversion
            out.append(Reading(root, quality.name, quality.family, symbol, score))
    # Slash chords: a triad over a bass note that is not in it.
    upper = pcs - {lowest}
    if len(upper) == 3:
        for root in upper:
            iv = frozenset((pc - root) % 12 for pc in upper)
            if iv not in ({0, 4, 7}, {0, 3, 7}):
                continue
            meaning = SLASH.get(((root - lowest) % 12, 3 in iv))
            if meaning is None:
                continue
            symbol = ROOT_NAMES[root] + ("m" if 3 in iv else "") + "/" + ROOT_NAMES[lowest]
            family = family_of(parse_chord(ROOT_NAMES[lowest] + meaning))
            score = SLASH_SCORE - SLASH_DOUBT.get(((root - lowest) % 12, 3 in iv), 0.0)
            if key is not None and _diatonic(key, lowest, family):
                score += DIATONIC
            out.append(Reading(lowest, "/" + meaning, family, symbol, score))
    # ties: the reading rooted on the lowest note, then the simpler quality (the same for
    # every transposition of the notes)
    order = {q.name: i for i, q in enumerate(QUALITIES)}
    out.sort(key=lambda r: (-r.score, r.root != lowest, order.get(r.quality, -1),
                            (r.root - lowest) % 12))
    return out


def _diatonic(key: Key, root: int, family: int) -> bool:
    return ((root - key.tonic) % 12, family) in (_MINOR_KEY if key.minor else _MAJOR_KEY)


def context_bonus(context: int, root: int, family: int) -> float:
    """How much the previous chord (a context index) favours a reading."""
    if context == NO_CONTEXT:
        return 0.0
    previous_root, previous = divmod(context, N_FAMILIES)
    motion = (root - previous_root) % 12
    if motion == 5:
        if previous in (MIN, HDIM) and family in (DOM, SUS):
            return RESOLVES
        if previous in (DOM, SUS) and family in (MAJ, MIN):
            return RESOLVES
        if previous == DOM and family == DOM:
            return DOMINANT_CHAIN
        return DOWN_A_FIFTH
    if motion == 11:
        if previous == DOM and family in (MAJ, MIN, DOM):
            return TRITONE_SUB
        if previous in (MIN, HDIM) and family == DOM:
            return TRITONE_SUB
    if motion == 0 and previous == family:
        return SAME_CHORD
    return 0.0


def best(options: list[Reading], context: int) -> Reading | None:
    """The reading that wins with the previous chord's context."""
    winner = None
    top = float("-inf")
    for reading in options:
        score = reading.score + context_bonus(context, reading.root, reading.family)
        if score > top:
            winner, top = reading, score
    return winner


@functools.lru_cache(maxsize=8192)
def chord_of(reading: Reading) -> Chord:
    """The Chord for a reading (parse_chord of its symbol; slash chords take the chord
    over the bass that they stand for, with the slash symbol)."""
    if reading.quality.startswith("/"):
        chord = parse_chord(ROOT_NAMES[reading.root] + reading.quality[1:])
        return replace(chord, symbol=reading.symbol)
    return parse_chord(reading.symbol)


def held_key(pitches: Iterable[int]) -> int:
    """The held notes as one int: lowest pitch class << 12 | mask of pitch classes
    (-1 when nothing is held)."""
    lowest = 128
    mask = 0
    for p in pitches:
        mask |= 1 << (p % 12)
        if p < lowest:
            lowest = p
    return -1 if lowest == 128 else (lowest % 12) << 12 | mask


def _decode(key: int) -> tuple[frozenset[int], int]:
    return frozenset(pc for pc in range(12) if key >> pc & 1), key >> 12


def recognize(pitches: Iterable[int], previous: Chord | None = None,
              key: Key | str | None = None, bass: int | None = None) -> Chord | None:
    """The chord the held `pitches` (MIDI notes) spell, or None when they name none
    (one note, or a dyad that is not a tritone, or a cluster).

    `bass`: a note held on a bass channel of its own; it is the lowest note whatever its
    octave. `previous`: the chord before (ii -> V -> I, tritone substitutes and a
    revoiced chord are likelier readings). `key`: a Key or a chart's key text.
    """
    notes = list(pitches)
    if bass is not None:
        notes = [*notes, bass]
    if not notes:
        return None
    code = held_key(notes)
    if bass is not None:
        code = (bass % 12) << 12 | (code & 0xFFF)
    if isinstance(key, str):
        key = parse_key(key)
    reading = best(_readings_of(code, key), context_index(previous))
    return chord_of(reading) if reading is not None else None


@functools.lru_cache(maxsize=65536)
def _readings_of(code: int, key: Key | None) -> list[Reading]:
    pcs, lowest = _decode(code)
    return readings(pcs, lowest, key)


class RecognitionTable:
    """recognize() precomputed for a key: `table[held_key][context_index]` -> an index into
    `chords` (-1: the notes name no chord), for every set of up to MAX_NOTES pitch classes
    over every lowest one. Built once (about a second), outside the MIDI callback."""

    __slots__ = ("key", "chords", "table", "_index")

    def __init__(self, key: Key | str | None = None) -> None:
        if isinstance(key, str):
            key = parse_key(key)
        self.key = key
        self.chords: list[Chord] = []
        self._index: dict[str, int] = {}
        table: dict[int, tuple[int, ...]] = {}
        shared: dict[tuple[int, ...], tuple[int, ...]] = {}
        contexts = range(N_CONTEXTS)
        for mask in range(1, 4096):
            count = mask.bit_count()
            if count < 2 or count > MAX_NOTES:
                continue
            pcs = frozenset(pc for pc in range(12) if mask >> pc & 1)
            for lowest in pcs:
                options = readings(pcs, lowest, key)
                if not options:
                    continue
                top = options[0].score
                # only readings the largest context bonus can lift to the top compete
                options = [r for r in options if r.score > top - RESOLVES - 1e-9]
                if len(options) == 1:
                    row = (self._id(options[0]),) * N_CONTEXTS
                else:
                    row = tuple(self._id(best(options, c)) for c in contexts)
                table[lowest << 12 | mask] = shared.setdefault(row, row)
        self.table = table

    def _id(self, reading: Reading | None) -> int:
        if reading is None:
            return -1
        index = self._index.get(reading.symbol)
        if index is None:
            index = self._index[reading.symbol] = len(self.chords)
            self.chords.append(chord_of(reading))
        return index

    def lookup(self, code: int, context: int = NO_CONTEXT) -> Chord | None:
        row = self.table.get(code)
        if row is None:
            return None
        return self.chords[row[context]]
