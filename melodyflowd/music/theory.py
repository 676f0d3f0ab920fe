"""Chord symbols -> Chord(root, bass, tones, scale, pentatonic). Pure, no I/O.

One parser reads the three notations musicians meet:

- standard: ``Cmaj7 CM7 Cm7 Cmin7 Cdim7 Cm7b5 Cø7 C7(b9,#11) C13 C7sus4 C6/9 Caug C/E``
- iReal Pro: ``C^7 C-7 Ch7 Co7 C7alt C7b9#9 C^9#11 C-^7 C7susadd3``
- WJazzD: ``Cj7 C-7 C79b C79# C7911# Fsus7913 C-j7 Co C+j7 NC``, where the
  accidental comes *after* the number (``79b`` = 7(b9)).

The part after the root is split by a small table-driven tokenizer into words
(``maj``, ``m``, ``sus``, ``alt``, ...), numbers and accidentals; the tokens are
then read in order into a chord structure (third, fifths, seventh, extensions).
The chord-scale is chosen from that structure the way a jazz player would and is
then made to contain every chord tone, so ``tones <= scale`` always holds.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from melodyflowd.errors import UserError
from melodyflowd.music.scale_modes import PER_CHORD_MODES


class ChordError(UserError):
    """A chord symbol that cannot be read; message names the symbol and what is accepted."""


@dataclass(frozen=True, slots=True)
class Chord:
    symbol: str                    # as written in the chart
    root: int | None               # pitch class 0-11, C = 0; None for NC
    bass: int | None               # pitch class of the bass (slash chords), else == root
    tones: tuple[int, ...]         # chord tones as pitch classes, root first, in stacking order
    scale: tuple[int, ...]         # chord-scale pitch classes starting at the root (7 or 8)
    pentatonic: tuple[int, ...]    # the 5-note subset the original Melody Flow used
    scale_name: str = ""           # e.g. "dorian", "altered"; "" for NC

    @property
    def is_no_chord(self) -> bool:
        return self.root is None


ACCEPTED = (
    "accepted: a root A-G with optional b/#, a quality such as maj7 ^7 j7 M7 m7 -7 min7 7 "
    "m7b5 ø h7 dim7 o7 aug + sus4 6 6/9 alt, extensions 9 11 13, alterations b5 #5 b9 #9 #11 "
    "b13 (also 7(b9,#11) or WJazzD 79b 7911#), an optional /bass, or NC"
)

NOTE_NAMES = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}
SHARP_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

NO_CHORD = frozenset({"NC", "N.C.", "N.C", "N/C"})

# Unicode and spelling variants folded before tokenizing.
_FOLD = str.maketrans({"♭": "b", "♯": "#", "Δ": "^", "△": "^", "°": "o", "Ø": "ø",
                       "–": "-", "−": "-"})

# Each scale by its degrees, then its five-note subset: the major / dominant / minor
# pentatonics of the original Melody Flow, the usual jazz pentatonic for the others.
_SCALE_TABLE = """
ionian                  1 2 3 4 5 6 7            1 2 3 5 6
lydian                  1 2 3 #4 5 6 7           1 2 3 5 6
lydian augmented        1 2 3 #4 #5 6 7          1 2 3 #5 7
mixolydian              1 2 3 4 5 6 b7           1 2 3 5 b7
mixolydian sus4         1 2 3 4 5 6 b7           1 2 4 5 b7
lydian dominant         1 2 3 #4 5 6 b7          1 2 3 #4 b7
mixolydian b6           1 2 3 4 5 b6 b7          1 2 3 5 b7
phrygian dominant       1 b2 3 4 5 b6 b7         1 b2 3 5 b7
altered                 1 b2 #2 3 #4 #5 b7       1 #2 3 #5 b7
half-whole diminished   1 b2 #2 3 #4 5 6 b7      1 b2 3 5 b7
whole tone              1 2 3 #4 #5 b7           1 2 3 #5 b7
dorian                  1 2 b3 4 5 6 b7          1 b3 4 5 b7
aeolian                 1 2 b3 4 5 b6 b7         1 b3 4 5 b7
phrygian                1 b2 b3 4 5 b6 b7        1 b3 4 5 b7
melodic minor           1 2 b3 4 5 6 7           1 2 b3 5 6
locrian natural 2       1 2 b3 4 b5 b6 b7        1 b3 4 b5 b7
locrian                 1 b2 b3 4 b5 b6 b7       1 b3 4 b5 b7
whole-half diminished   1 2 b3 4 b5 b6 6 7       1 2 b3 b5 6
"""
_MAJOR_DEGREES = (0, 2, 4, 5, 7, 9, 11)


def _interval(degree: str) -> int:
    """A scale degree as semitones above the root: b3 is 3, #4 is 6."""
    return _MAJOR_DEGREES[int(degree[-1]) - 1] + degree.count("#") - degree.count("b")


def _scale_rows() -> dict[str, tuple[tuple[int, ...], tuple[int, ...]]]:
    rows = {}
    for line in _SCALE_TABLE.strip().splitlines():
        name, notes, five = re.split(r"\s{2,}", line)          # columns: two spaces or more
        rows[name] = (tuple(map(_interval, notes.split())), tuple(map(_interval, five.split())))
    return rows


_SCALE_ROWS = _scale_rows()
SCALES: dict[str, tuple[int, ...]] = {name: row[0] for name, row in _SCALE_ROWS.items()}
PENTATONICS: dict[str, tuple[int, ...]] = {name: row[1] for name, row in _SCALE_ROWS.items()}

MODES = PER_CHORD_MODES       # the modes pitch_classes answers; all modes: scale_modes

# --------------------------------------------------------------------------- tokenizer

# (text, kind, value), matched longest first at each position.
_WORDS: tuple[tuple[str, str, str], ...] = tuple(sorted((
    ("major", "maj", "word"), ("maj", "maj", "word"), ("Maj", "maj", "word"),
    ("ma", "maj", "word"), ("M", "maj", "word"), ("j", "maj", "sym"), ("^", "maj", "sym"),
    ("minor", "min", ""), ("min", "min", ""), ("mi", "min", ""), ("m", "min", ""),
    ("dim", "dim", ""), ("o", "dim", ""),
    ("ø", "halfdim", ""), ("h", "halfdim", ""),
    ("aug", "aug", ""),
    ("sus4", "sus", "4"), ("sus2", "sus", "2"), ("sus", "sus", "4"),
    ("alt", "alt", ""), ("add", "add", ""), ("omit", "omit", ""), ("no", "omit", ""),
    ("b", "acc", "-1"), ("#", "acc", "1"), ("-", "dash", ""), ("+", "plus", ""),
    ("(", "sep", ""), (")", "sep", ""), (",", "sep", ""), ("/", "sep", ""), (" ", "sep", ""),
), key=lambda w: -len(w[0])))

_NUMBERS = ("13", "11", "2", "3", "4", "5", "6", "7", "9")


@dataclass(frozen=True, slots=True)
class _Tok:
    kind: str     # maj min dim halfdim aug sus alt add omit acc dash plus sep num
    value: str
    pos: int      # index in the suffix


def _tokenize(suffix: str, symbol: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    i = 0
    while i < len(suffix):
        if suffix[i].isdigit():
            for number in _NUMBERS:
                if suffix.startswith(number, i):
                    tokens.append(_Tok("num", number, i))
                    i += len(number)
                    break
            else:
                raise ChordError(f"unknown chord symbol {symbol!r}: no degree "
                                 f"{suffix[i:]!r} (degrees 2-7, 9, 11, 13); {ACCEPTED}")
            continue
        for text, kind, value in _WORDS:
            if suffix.startswith(text, i):
                tokens.append(_Tok(kind, value, i))
                i += len(text)
                break
        else:
            raise ChordError(f"unknown chord symbol {symbol!r}: cannot read "
                             f"{suffix[i:]!r}; {ACCEPTED}")
    return tokens


def _postfix_notation(tokens: list[_Tok]) -> bool:
    """WJazzD writes the accidental after the number (79b, 7911#).

    Recognised by numbers glued to a 7 (79, 7911, 7913: standard notation never
    writes those) or by an accidental that ends a run with no number after it.
    """
    for a, b in zip(tokens, tokens[1:], strict=False):
        if (a.kind == "num" and b.kind == "num" and b.pos == a.pos + len(a.value)
                and a.value == "7"):
            return True
    for k, tok in enumerate(tokens):
        if tok.kind in ("acc", "plus", "dash") and k > 0 and tokens[k - 1].kind == "num":
            nxt = tokens[k + 1] if k + 1 < len(tokens) else None
            if (nxt is None or nxt.kind != "num") and (
                    tok.kind == "acc" or tokens[k - 1].value != "7"):
                return True
    return False


# --------------------------------------------------------------------------- structure

@dataclass(slots=True)
class _Shape:
    third: int | None = 4                 # 4 major, 3 minor, 5 sus4, 2 sus2, None: no third
    fifths: set[int] = field(default_factory=lambda: {7})
    seventh: int | None = None            # 10 minor 7th, 11 major 7th, 9 diminished 7th
    sixth: bool = False
    ninths: set[int] = field(default_factory=set)
    elevenths: set[int] = field(default_factory=set)
    thirteenths: set[int] = field(default_factory=set)
    added: set[int] = field(default_factory=set)
    maj: str = ""                         # "word" (maj, M) or "sym" (^, j) seen
    quality: str = ""                     # "", min, dim, halfdim, aug, sus
    alt: bool = False
    sus: bool = False

    def seventh_kind(self) -> int:
        if self.maj:
            return 11
        if self.quality == "dim":
            return 9
        return 10


def _alter(shape: _Shape, degree: str, acc: int, symbol: str) -> None:
    if degree == "5":
        shape.fifths.discard(7)
        shape.fifths.add(7 + acc)
    elif degree == "9":                   # an altered 9 replaces the natural one (C13b9)
        shape.ninths.discard(2)
        shape.ninths.add(2 + acc)
    elif degree in ("11", "4") and acc > 0:
        shape.elevenths.discard(5)
        shape.elevenths.add(6)
    elif degree in ("13", "6") and acc < 0:
        shape.thirteenths.discard(9)
        shape.thirteenths.add(8)
    else:
        sign = "b" if acc < 0 else "#"
        raise ChordError(f"unknown chord symbol {symbol!r}: no alteration {sign}{degree} "
                         f"(b5 #5 b9 #9 #11 b13); {ACCEPTED}")


def _natural(shape: _Shape, degree: str, first: bool, symbol: str) -> None:
    """A plain number: the first one names the chord (7, 9, 13, 6 ...), later ones add tones."""
    if first:
        if degree in ("7", "9", "11", "13"):
            if shape.seventh is None:
                shape.seventh = shape.seventh_kind()
            if degree in ("9", "11", "13"):
                shape.ninths.add(2)
            if degree == "11":
                shape.elevenths.add(5)
            if degree == "13":
                shape.thirteenths.add(9)
                if shape.third == 3:
                    shape.elevenths.add(5)
        elif degree == "6":
            shape.sixth = True
        elif degree == "5":
            shape.third = None
        elif degree == "4":
            shape.third = 5
            shape.sus = True
        elif degree == "2":
            shape.ninths.add(2)
        else:
            raise ChordError(f"unknown chord symbol {symbol!r}: a chord cannot be "
                             f"named {degree!r}; {ACCEPTED}")
        return
    if degree == "9":
        shape.ninths.add(2)
    elif degree == "11":
        shape.elevenths.add(5)
    elif degree == "13":
        shape.thirteenths.add(9)
    elif degree == "6":
        if shape.seventh is None:
            shape.sixth = True
        else:
            shape.thirteenths.add(9)
    elif degree == "7" and shape.seventh is None:
        shape.seventh = shape.seventh_kind()
    elif degree == "2":
        shape.ninths.add(2)
    elif degree == "4":
        shape.elevenths.add(5)
    elif degree == "5" and shape.third is not None:
        return
    else:
        raise ChordError(f"unknown chord symbol {symbol!r}: unexpected {degree!r} after "
                         f"the chord's number; {ACCEPTED}")


def _swap_postfix(tokens: list[_Tok]) -> list[_Tok]:
    """WJazzD's trailing accidentals moved in front of their numbers: 9 b -> b 9."""
    swapped: list[_Tok] = []
    k = 0
    while k < len(tokens):
        tok = tokens[k]
        nxt = tokens[k + 1] if k + 1 < len(tokens) else None
        if (tok.kind == "num" and tok.value in ("5", "9", "11", "13") and nxt is not None
                and nxt.kind in ("acc", "plus", "dash")):
            swapped.extend((nxt, tok))
            k += 2
        else:
            swapped.append(tok)
            k += 1
    return swapped


def _meaning(tok: _Tok, nxt: _Tok | None, shape: _Shape, seen_number: bool) -> _Tok:
    """A dash or plus read in context: before any number and quality it is the quality
    (C- minor, C+ augmented), else an accidental (C7-9, C7+9) or, ending the run, #5 (C7+)."""
    names_quality = not seen_number and shape.quality == "" and not shape.maj
    if tok.kind == "dash":
        return _Tok("min", tok.value, tok.pos) if names_quality else _Tok("acc", "-1", tok.pos)
    if tok.kind == "plus":
        if names_quality or nxt is None or nxt.kind != "num":
            return _Tok("aug", tok.value, tok.pos)
        return _Tok("acc", "1", tok.pos)
    return tok


def _omit(shape: _Shape, degree: str, symbol: str) -> None:
    if degree not in ("3", "5"):
        raise ChordError(f"unknown chord symbol {symbol!r}: only no3 / no5 can "
                         f"be left out; {ACCEPTED}")
    if degree == "3":
        shape.third = None
    else:
        shape.fifths.discard(7)


_ADDED: dict[str, tuple[str, int]] = {
    "3": ("added", 4), "2": ("ninths", 2), "9": ("ninths", 2), "4": ("elevenths", 5),
    "11": ("elevenths", 5), "6": ("thirteenths", 9), "13": ("thirteenths", 9),
}


def _add(shape: _Shape, degree: str, symbol: str) -> None:
    if degree not in _ADDED:
        raise ChordError(f"unknown chord symbol {symbol!r}: cannot add "
                         f"{degree!r}; {ACCEPTED}")
    tones, tone = _ADDED[degree]
    getattr(shape, tones).add(tone)


def _major(shape: _Shape, tok: _Tok, seen_number: bool, symbol: str) -> None:
    if shape.maj:
        raise ChordError(f"unknown chord symbol {symbol!r}: major written twice; "
                         f"{ACCEPTED}")
    shape.maj = tok.value
    if seen_number and shape.seventh is not None:
        shape.seventh = 11            # C-7maj? treat as "C-(maj7)" written late


def _alt(shape: _Shape) -> None:
    shape.alt = True
    if shape.seventh is None:
        shape.seventh = 10


def _sus(shape: _Shape, tok: _Tok) -> None:
    shape.third = 5 if tok.value == "4" else 2
    shape.sus = True


def _quality(shape: _Shape, kind: str, seen_number: bool, symbol: str) -> None:
    """A triad quality: only before the numbers (C-7, Co7, C+j7, Ch7); aug also after (C7+)."""
    if seen_number and kind != "aug":
        raise ChordError(f"unknown chord symbol {symbol!r}: the quality must come "
                         f"before the numbers; {ACCEPTED}")
    if shape.quality and not (shape.quality == "min" and kind == "aug"):
        raise ChordError(f"unknown chord symbol {symbol!r}: two qualities "
                         f"({shape.quality}, {kind}); {ACCEPTED}")
    if kind == "min":
        shape.quality, shape.third = "min", 3
    elif kind == "dim":
        shape.quality, shape.third, shape.fifths = "dim", 3, {6}
    elif kind == "halfdim":
        shape.quality, shape.third, shape.fifths, shape.seventh = "halfdim", 3, {6}, 10
    elif kind == "aug":
        if shape.quality == "":
            shape.quality = "aug"
        shape.fifths.discard(7)
        shape.fifths.add(8)


def _settle_major_seventh(shape: _Shape) -> None:
    """C^ and Cj mean Cmaj7; any seventh written with a major word is the major seventh."""
    if shape.maj == "sym" and shape.seventh is None and not shape.sixth:
        shape.seventh = 11
    if shape.seventh is not None and shape.maj and shape.seventh != 11:
        shape.seventh = 11


@dataclass(slots=True)
class _Reader:
    """Reads a chord suffix's tokens into a _Shape, one token at a time.

    A number's meaning depends on what came before it: an accidental waiting for its
    degree (b9), an "add" or "omit" word waiting for its degree, or nothing (the first
    plain number names the chord, later ones add tones).
    """

    symbol: str
    shape: _Shape = field(default_factory=_Shape)
    seen_number: bool = False
    pending_acc: int | None = None
    pending_word: str = ""          # "add" or "omit" waiting for its number

    def read(self, tok: _Tok) -> None:
        self._check_pending(tok.kind)
        match tok.kind:
            case "sep":
                pass
            case "acc":
                self.pending_acc = int(tok.value)
            case "num":
                self._number(tok.value)
            case "add" | "omit":
                self.pending_word = tok.kind
            case "maj":
                _major(self.shape, tok, self.seen_number, self.symbol)
            case "alt":
                _alt(self.shape)
            case "sus":
                _sus(self.shape, tok)
            case kind:
                _quality(self.shape, kind, self.seen_number, self.symbol)

    def _check_pending(self, kind: str) -> None:
        if self.pending_acc is not None and kind != "num":
            raise ChordError(f"unknown chord symbol {self.symbol!r}: an accidental needs a "
                             f"degree after it; {ACCEPTED}")
        if self.pending_word and kind not in ("num", "acc"):
            raise ChordError(f"unknown chord symbol {self.symbol!r}: {self.pending_word} "
                             f"needs a degree after it; {ACCEPTED}")

    def _number(self, degree: str) -> None:
        if self.pending_word == "omit":
            _omit(self.shape, degree, self.symbol)
        elif self.pending_acc is not None:
            _alter(self.shape, degree, self.pending_acc, self.symbol)
        elif self.pending_word == "add":
            _add(self.shape, degree, self.symbol)
        else:
            _natural(self.shape, degree, not self.seen_number, self.symbol)
            self.seen_number = True
        self.pending_acc = None
        self.pending_word = ""

    def finish(self) -> _Shape:
        if self.pending_acc is not None or self.pending_word:
            raise ChordError(f"unknown chord symbol {self.symbol!r}: it ends in the middle "
                             f"of an alteration; {ACCEPTED}")
        _settle_major_seventh(self.shape)
        return self.shape


def _read(tokens: list[_Tok], symbol: str) -> _Shape:
    if _postfix_notation(tokens):
        tokens = _swap_postfix(tokens)
    reader = _Reader(symbol)
    for k, tok in enumerate(tokens):
        nxt = tokens[k + 1] if k + 1 < len(tokens) else None
        reader.read(_meaning(tok, nxt, reader.shape, reader.seen_number))
    return reader.finish()


def _tones(shape: _Shape) -> list[int]:
    tones = [0]
    if shape.third is not None:
        tones.append(shape.third)
    tones.extend(sorted(shape.fifths))
    if shape.seventh is not None:
        if shape.sixth:
            tones.append(9)
        tones.append(shape.seventh)
    elif shape.sixth:
        tones.append(9)
    tones.extend(sorted(shape.ninths))
    tones.extend(sorted(shape.added))
    tones.extend(sorted(shape.elevenths))
    tones.extend(sorted(shape.thirteenths))
    out: list[int] = []
    for tone in tones:
        if tone not in out:
            out.append(tone)
    return out


@dataclass(frozen=True, slots=True)
class _Alterations:
    """The altered tones a chord's scale is chosen by."""

    sharp5: bool        # #5 or b13
    flat5: bool         # b5 without the natural fifth
    sharp11: bool
    flat9: bool
    sharp9: bool

    @classmethod
    def of(cls, shape: _Shape) -> _Alterations:
        return cls(sharp5=8 in shape.fifths or 8 in shape.thirteenths,
                   flat5=6 in shape.fifths and 7 not in shape.fifths,
                   sharp11=6 in shape.elevenths,
                   flat9=1 in shape.ninths, sharp9=3 in shape.ninths)


def _scale_name(shape: _Shape) -> str:
    alt = _Alterations.of(shape)
    if shape.quality == "dim":
        return "whole-half diminished" if shape.seventh in (9, 11, None) else "locrian natural 2"
    if shape.third == 3:
        return _minor_scale(shape, alt)
    if shape.seventh == 10:                           # dominant (major third or sus)
        return _dominant_scale(shape, alt)
    return _major_scale(shape, alt)


def _minor_scale(shape: _Shape, alt: _Alterations) -> str:
    if alt.flat5 and shape.seventh == 10:
        return "locrian" if alt.flat9 else "locrian natural 2"
    if alt.flat5:
        return "whole-half diminished"
    if shape.seventh == 11 or (shape.sixth and shape.seventh is None):
        return "melodic minor"
    if alt.flat9:
        return "phrygian"
    if alt.sharp5:
        return "aeolian"
    return "dorian"


def _dominant_scale(shape: _Shape, alt: _Alterations) -> str:
    if shape.alt:
        return "altered"
    if shape.sus and shape.third == 5:
        return "phrygian" if alt.flat9 else "mixolydian sus4"
    if (alt.flat9 or alt.sharp9) and alt.sharp5:
        return _altered_or_phrygian_dominant(shape, alt)
    if _half_whole(shape, alt):
        return "half-whole diminished"
    return _plain_dominant_scale(shape, alt)


def _altered_or_phrygian_dominant(shape: _Shape, alt: _Alterations) -> str:
    """A dominant with an altered ninth and a sharp five (or flat thirteen)."""
    if alt.flat9 and not alt.sharp9 and 8 not in shape.fifths and not (alt.sharp11 or alt.flat5):
        return "phrygian dominant"                    # 7(b9,b13): the V of a minor key
    return "altered"


def _half_whole(shape: _Shape, alt: _Alterations) -> bool:
    """7b9, 7(b9,#11), 7(#9,13), and 7#9 on its own (1 3 5 b7 #9)."""
    if alt.flat9 or alt.sharp11 or alt.flat5 or 9 in shape.thirteenths:
        return alt.flat9 or alt.sharp9
    return alt.sharp9


def _plain_dominant_scale(shape: _Shape, alt: _Alterations) -> str:
    if (alt.sharp5 and 8 in shape.fifths) or alt.flat5:
        return "whole tone"
    if alt.sharp11:
        return "lydian dominant"
    if 8 in shape.thirteenths:
        return "mixolydian b6"
    return "mixolydian"


def _major_scale(shape: _Shape, alt: _Alterations) -> str:
    if shape.seventh == 11 and 8 in shape.fifths:
        return "lydian augmented"
    if 8 in shape.fifths and 7 not in shape.fifths:
        return "whole tone"
    if shape.third == 5 and shape.seventh is None:
        return "mixolydian sus4"
    if alt.sharp11 or alt.flat5:
        return "lydian"
    return "ionian"


def _fit(scale: list[int], tones: list[int]) -> list[int]:
    """Make the scale hold every chord tone: a missing tone replaces a neighbour step."""
    scale = list(scale)
    for tone in tones:
        if tone in scale:
            continue
        for neighbour in ((tone - 1) % 12, (tone + 1) % 12, (tone - 2) % 12, (tone + 2) % 12):
            if neighbour in scale and neighbour != 0 and neighbour not in tones:
                scale[scale.index(neighbour)] = tone
                break
        else:
            scale.append(tone)
    return sorted(scale)


@functools.lru_cache(maxsize=4096)
def parse_chord(symbol: str) -> Chord:
    """Parse a chord symbol in standard, iReal Pro or WJazzD notation. Raises ChordError."""
    if not isinstance(symbol, str):
        raise ChordError(f"chord symbol must be text, not {type(symbol).__name__}; {ACCEPTED}")
    text = symbol.strip().translate(_FOLD)
    if text in NO_CHORD:
        return Chord(symbol, None, None, (), (), (), "")
    if not text:
        raise ChordError(f"empty chord symbol; {ACCEPTED}")
    root, rest = _note(text, symbol, what="root")

    bass = root
    match = re.search(r"/([A-G][#b]?)$", rest)
    if match:
        bass, _ = _note(match.group(1), symbol, what="bass")
        rest = rest[: match.start()]

    shape = _read(_tokenize(rest, symbol), symbol)
    name = _scale_name(shape)
    if shape.alt:                                     # 7alt: 1 3 b7 with b9 #9 #11 b13
        shape.fifths = set()
        shape.ninths = {1, 3}
        shape.elevenths = {6}
        shape.thirteenths = {8}
    intervals = _tones(shape)
    scale_iv = _fit(list(SCALES[name]), intervals)
    bass_iv = (bass - root) % 12
    if bass_iv not in intervals:
        intervals.append(bass_iv)
        scale_iv = _fit(scale_iv, intervals)
    penta_iv = [i for i in PENTATONICS[name] if i in scale_iv]
    for i in (0, shape.third, 7, shape.seventh):        # refill from the chord's own tones
        if len(penta_iv) >= 5:
            break
        if i is not None and i in scale_iv and i not in penta_iv:
            penta_iv.append(i)
    for i in scale_iv:
        if len(penta_iv) >= 5:
            break
        if i not in penta_iv:
            penta_iv.append(i)
    penta_iv.sort()

    def absolute(ivs: list[int]) -> tuple[int, ...]:
        return tuple((root + i) % 12 for i in ivs)

    return Chord(symbol=symbol, root=root, bass=bass, tones=absolute(intervals),
                 scale=absolute(scale_iv), pentatonic=absolute(penta_iv), scale_name=name)


def _note(text: str, symbol: str, what: str) -> tuple[int, str]:
    if not text or text[0] not in NOTE_NAMES:
        raise ChordError(f"unknown chord symbol {symbol!r}: the {what} must be a note "
                         f"A-G (then b or #); {ACCEPTED}")
    pc = NOTE_NAMES[text[0]]
    i = 1
    if i < len(text) and text[i] in "b#":     # one accidental: Cb9 is the C-flat ninth chord
        pc += -1 if text[i] == "b" else 1
        i += 1
    return pc % 12, text[i:]


def pitch_classes(chord: Chord, mode: str) -> tuple[int, ...]:
    """Allowed pitch classes for a scale mode: chord-scale | pentatonic | chord-tones | chromatic.

    For NC every mode yields all 12 pitch classes.
    """
    if mode not in MODES:
        raise UserError(f"unknown scale mode {mode!r}: use one of {', '.join(MODES)}")
    if chord.root is None:
        return tuple(range(12))
    if mode == "chord-scale":
        return chord.scale
    if mode == "pentatonic":
        return chord.pentatonic
    if mode == "chord-tones":
        return chord.tones
    return tuple((chord.root + i) % 12 for i in range(12))


def note_name(pc: int) -> str:
    """A readable name for a pitch class without context (flats for the black keys but F#)."""
    return SHARP_NAMES[pc % 12]


_LETTERS = "CDEFGAB"
_ACCIDENTALS = {-2: "bb", -1: "b", 0: "", 1: "#", 2: "##"}


def _spelled(letter: str, pc: int) -> str | None:
    """`pc` written on `letter` with at most a double accidental, else None."""
    diff = (pc - NOTE_NAMES[letter]) % 12
    diff = diff - 12 if diff > 6 else diff
    return letter + _ACCIDENTALS[diff] if diff in _ACCIDENTALS else None


def note_names(chord: Chord, pcs: tuple[int, ...]) -> tuple[str, ...]:
    """Spell pitch classes the way a jazz player reads them over this chord.

    A seven-note scale takes one letter a degree from the written root (Db dorian:
    Db Eb Fb Gb Ab Bb Cb; Fm7b5: F G Ab Bb Cb Db Eb) and the chord tones are named as
    in it; where that would need a double flat or sharp (Dbm7b5), and in the altered
    scale (C7alt: C Db D# E F# G# Bb), each note takes the letter of its degree above
    the root (b9 of D is Eb, #9 of G is A#). The half-whole scale of a dominant names each
    note by its degree (G7b9: G Ab A# B C# D E F); the whole-half scale of a diminished
    chord and the whole-tone scale keep to one kind of accidental: flats on a flat root
    or C and F, sharps on a sharp root and G D A E B (B whole-half: B C# D E F G G# A#).
    The chord tones are spelled as chord tones even where that scale spells one of them
    otherwise (Bo7: B D F Ab).
    """
    if chord.root is None:
        return tuple(note_name(pc) for pc in pcs)
    folded = chord.symbol.strip().translate(_FOLD)
    root_name = folded[:2] if folded[1:2] in ("b", "#") else folded[:1]
    tones, scale = _spellings(root_name, chord.tones, chord.scale)
    table = tones if tuple(pcs) == chord.tones else {**tones, **scale} \
        if len(chord.scale) == 7 else {**scale}
    return tuple(table.get(pc) or tones.get(pc) or note_name(pc) for pc in pcs)


@functools.lru_cache(maxsize=4096)
def _spellings(root_name: str, tones: tuple[int, ...],
               scale: tuple[int, ...]) -> tuple[dict[int, str], dict[int, str]]:
    """(chord tone names, scale names) for a chord written on `root_name`."""
    root = (NOTE_NAMES[root_name[0]] + (root_name.count("#") - root_name.count("b"))) % 12
    letter = _LETTERS.index(root_name[0])
    tone_names = {pc: _degree_name(letter, root, pc, tones) for pc in tones}
    tone_names[root] = root_name
    intervals = tuple(sorted((pc - root) % 12 for pc in scale))
    if len(scale) == 7 and intervals != SCALES["altered"]:
        # one letter a degree, the chord tones named as in the scale (Fm7b5: Cb, not B)
        ordered = sorted(scale, key=lambda p: (p - root) % 12)
        strict = [_spelled(_LETTERS[(letter + k) % 7], pc) for k, pc in enumerate(ordered)]
        if all(name is not None and len(name) <= 2 for name in strict):
            names = dict(zip(ordered, strict, strict=True))
            return {pc: names.get(pc, tone_names[pc]) for pc in tones}, names
    if len(scale) == 7:
        names = dict(tone_names)
        used = {name[0] for pc, name in names.items() if pc in scale}
        free = [_LETTERS[(letter + k) % 7] for k in range(7)
                if _LETTERS[(letter + k) % 7] not in used]
        rest = [pc for pc in sorted(scale, key=lambda p: (p - root) % 12) if pc not in names]
        if len(free) == len(rest):
            for pc, step in zip(rest, free, strict=True):
                name = _spelled(step, pc)
                names[pc] = name if name and len(name) <= 2 else _degree_name(
                    letter, root, pc, tones)
        for pc in rest:
            names.setdefault(pc, _degree_name(letter, root, pc, tones))
        return tone_names, names
    if 4 in {(pc - root) % 12 for pc in tones} and len(scale) == 8:
        # half-whole over a dominant: each note by its degree (G Ab A# B C# D E F)
        return tone_names, {pc: tone_names.get(pc) or _degree_name(letter, root, pc, tones)
                            for pc in scale}
    return tone_names, _one_kind(root_name, root, letter, scale, tone_names)


def _degree_name(letter: int, root: int, pc: int, context_pcs: tuple[int, ...]) -> str:
    """One note by its degree above the root, read from the chord's intervals."""
    context = {(p - root) % 12 for p in (*context_pcs, pc)}
    major_third, fifth = 4 in context, 7 in context
    diminished = 3 in context and 6 in context and not fifth and 10 not in context
    interval = (pc - root) % 12
    degrees = {3: (1, 2) if major_third else (2,),            # #9 over a major 3rd, else b3
               6: (3, 4) if major_third else (4, 3),          # #11, or b5 in minor / dim
               8: (4, 5) if major_third and not fifth else (5, 4),   # #5, else b13 / b6
               9: (6, 5) if diminished else (5, 6),           # bb7 of a dim7, else 6 / 13
               11: (6, 0),                                    # major 7th (C#o7: C, not B#)
               }.get(interval, ((0, 1, 1, 2, 2, 3, 3, 4, 5, 5, 6, 6)[interval],))
    # a degree that needs a double accidental (the b9 of Ab) is read on the next letter
    for group in (degrees, tuple(d + e for d in degrees for e in (-1, 1))):
        single = [name for degree in group
                  if (name := _spelled(_LETTERS[(letter + degree) % 7], pc)) is not None
                  and len(name) <= 2]
        # where the degree is a choice (#9 or b3, #11 or b5 ...), not E# B# Cb Fb
        plain = [n for n in single if n not in ("E#", "B#", "Cb", "Fb")]
        if len(group) > 1 and plain:
            return plain[0]
        if single:
            return single[0]
    return note_name(pc)


def _one_kind(root_name: str, root: int, letter: int, scale: tuple[int, ...],
              tone_names: dict[int, str]) -> dict[int, str]:
    """Names for a scale that is not seven notes: letters in order from the root, one kind
    of accidental (the root's side), as few repeated letters, E#/B#/Cb/Fb and chord tones
    spelled otherwise than in the chord as can be."""
    sharp_side = "#" in root_name or root_name in ("G", "D", "A", "E", "B")
    ordered = sorted(scale, key=lambda p: (p - root) % 12)
    options: list[list[tuple[int, str]]] = []
    for pc in ordered:
        found = []
        for k in range(8):
            name = _spelled(_LETTERS[(letter + k) % 7], pc)
            if name is not None and len(name) <= 2:
                found.append((k, name))
        options.append(found if pc != root else [(0, root_name)])
    best: tuple[float, list[str]] | None = None
    pc_of = ordered

    def search(i: int, last: int, chosen: list[str], cost: float) -> None:
        nonlocal best
        if best is not None and cost >= best[0]:
            return
        if i == len(ordered):
            best = (cost, list(chosen))
            return
        for k, name in options[i]:
            if k < last:
                continue
            step = cost + (3 if (k == last and i) or k == 7 else 0) + (
                1 if name in ("E#", "B#", "Cb", "Fb") else 0)
            if pc_of[i] in tone_names and tone_names[pc_of[i]] != name:
                step += 1.5
            if len(name) == 2 and (name[1] == "#") != sharp_side:
                step += 2
            chosen.append(name)
            search(i + 1, k, chosen, step)
            chosen.pop()

    search(0, 0, [], 0.0)
    names = best[1] if best is not None else [note_name(pc) for pc in ordered]
    return dict(zip(ordered, names, strict=True))


def midi_note(text: str) -> int:
    """A MIDI note number from "60" or a note name with its octave, middle C being C4
    ("C4" 60, "Bb3" 58, "F#5" 78). ValueError names what is accepted."""
    text = text.strip()
    if text.isdigit() and 0 <= int(text) <= 127:
        return int(text)
    letter, rest = text[:1].upper(), text[1:]
    accidental = 0
    while rest[:1] in ("b", "#"):
        accidental += 1 if rest[0] == "#" else -1
        rest = rest[1:]
    try:
        octave = int(rest)
    except ValueError:
        octave = None
    if letter not in NOTE_NAMES or octave is None or \
            not 0 <= 12 * (octave + 1) + NOTE_NAMES[letter] + accidental <= 127:
        raise ValueError(f"{text!r} is not a note: give a MIDI note number 0-127 or a note "
                         "name with its octave (C4 is middle C, 60; Bb3, F#5)")
    return 12 * (octave + 1) + NOTE_NAMES[letter] + accidental
