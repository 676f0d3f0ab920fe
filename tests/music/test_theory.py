"""Chord symbols in the three notations: root, bass, tones, chord-scale, pentatonic."""

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melodyflowd.errors import UserError
from melodyflowd.music.theory import ChordError, note_names, parse_chord, pitch_classes

PC = {"C": 0, "C#": 1, "Db": 1, "D": 2, "D#": 3, "Eb": 3, "E": 4, "Fb": 4, "E#": 5, "F": 5,
      "F#": 6, "Gb": 6, "G": 7, "G#": 8, "Ab": 8, "A": 9, "A#": 10, "Bb": 10, "B": 11,
      "Cb": 11}


def pcs(names: str) -> tuple[int, ...]:
    return tuple(PC[n] for n in names.split())


# symbol, root, bass, chord tones (stacking order), scale name, scale (from the root).
# Worked out by hand from the chord spelling and the scale's step pattern.
TABLE = [
    # --- standard
    ("Cmaj7", "C", "C", "C E G B", "ionian", "C D E F G A B"),
    ("CM7", "C", "C", "C E G B", "ionian", "C D E F G A B"),
    ("Cm7", "C", "C", "C Eb G Bb", "dorian", "C D Eb F G A Bb"),
    ("Cmin7", "C", "C", "C Eb G Bb", "dorian", "C D Eb F G A Bb"),
    ("Cdim7", "C", "C", "C Eb Gb A", "whole-half diminished", "C D Eb F Gb Ab A B"),
    ("Cm7b5", "C", "C", "C Eb Gb Bb", "locrian natural 2", "C D Eb F Gb Ab Bb"),
    ("Cø7", "C", "C", "C Eb Gb Bb", "locrian natural 2", "C D Eb F Gb Ab Bb"),
    ("C7(b9,#11)", "C", "C", "C E G Bb Db F#", "half-whole diminished",
     "C Db Eb E F# G A Bb"),
    ("C13", "C", "C", "C E G Bb D A", "mixolydian", "C D E F G A Bb"),
    ("C7sus4", "C", "C", "C F G Bb", "mixolydian sus4", "C D E F G A Bb"),
    ("C6/9", "C", "C", "C E G A D", "ionian", "C D E F G A B"),
    ("Caug", "C", "C", "C E G#", "whole tone", "C D E F# G# A#"),
    ("C/E", "C", "E", "C E G", "ionian", "C D E F G A B"),
    ("Gmaj7#11", "G", "G", "G B D F# C#", "lydian", "G A B C# D E F#"),
    ("Bb7", "Bb", "Bb", "Bb D F Ab", "mixolydian", "Bb C D Eb F G Ab"),
    ("F#m7", "F#", "F#", "F# A C# E", "dorian", "F# G# A B C# D# E"),
    ("Ebm(maj7)", "Eb", "Eb", "Eb Gb Bb D", "melodic minor", "Eb F Gb Ab Bb C D"),
    ("Am6", "A", "A", "A C E F#", "melodic minor", "A B C D E F# G#"),
    ("D7b9", "D", "D", "D F# A C Eb", "half-whole diminished", "D Eb F F# G# A B C"),
    ("G7#5", "G", "G", "G B D# F", "whole tone", "G A B C# D# F"),
    ("E7#9", "E", "E", "E G# B D G", "half-whole diminished", "E F G G# A# B C# D"),
    ("Abmaj9", "Ab", "Ab", "Ab C Eb G Bb", "ionian", "Ab Bb C Db Eb F G"),
    ("Dm9", "D", "D", "D F A C E", "dorian", "D E F G A B C"),
    ("Cm11", "C", "C", "C Eb G Bb D F", "dorian", "C D Eb F G A Bb"),
    ("C7b13", "C", "C", "C E G Bb Ab", "mixolydian b6", "C D E F G Ab Bb"),
    ("Cadd9", "C", "C", "C E G D", "ionian", "C D E F G A B"),
    ("Csus2", "C", "C", "C D G", "ionian", "C D E F G A B"),
    ("C7b9b13", "C", "C", "C E G Bb Db Ab", "phrygian dominant", "C Db E F G Ab Bb"),
    ("Bbm7/Eb", "Bb", "Eb", "Bb Db F Ab Eb", "dorian", "Bb C Db Eb F G Ab"),
    ("F/A", "F", "A", "F A C", "ionian", "F G A Bb C D E"),
    ("C9sus4", "C", "C", "C F G Bb D", "mixolydian sus4", "C D E F G A Bb"),
    ("C7b5", "C", "C", "C E Gb Bb", "whole tone", "C D E F# G# A#"),
    ("C7#11", "C", "C", "C E G Bb F#", "lydian dominant", "C D E F# G A Bb"),
    ("C13b9", "C", "C", "C E G Bb Db A", "half-whole diminished", "C Db Eb E F# G A Bb"),
    ("Cb9", "Cb", "Cb", "Cb Eb Gb A Db", "mixolydian", "Cb Db Eb E Gb Ab A"),
    # --- iReal Pro
    ("C^7", "C", "C", "C E G B", "ionian", "C D E F G A B"),
    ("C-7", "C", "C", "C Eb G Bb", "dorian", "C D Eb F G A Bb"),
    ("Ch7", "C", "C", "C Eb Gb Bb", "locrian natural 2", "C D Eb F Gb Ab Bb"),
    ("Ch", "C", "C", "C Eb Gb Bb", "locrian natural 2", "C D Eb F Gb Ab Bb"),
    ("Co7", "C", "C", "C Eb Gb A", "whole-half diminished", "C D Eb F Gb Ab A B"),
    ("C7alt", "C", "C", "C E Bb Db D# F# G#", "altered", "C Db Eb E F# G# Bb"),
    ("C7b9#9", "C", "C", "C E G Bb Db D#", "half-whole diminished", "C Db Eb E F# G A Bb"),
    ("C^9#11", "C", "C", "C E G B D F#", "lydian", "C D E F# G A B"),
    ("C-^7", "C", "C", "C Eb G B", "melodic minor", "C D Eb F G A B"),
    ("C^", "C", "C", "C E G B", "ionian", "C D E F G A B"),
    ("C7susadd3", "C", "C", "C F G Bb E", "mixolydian sus4", "C D E F G A Bb"),
    ("C-6", "C", "C", "C Eb G A", "melodic minor", "C D Eb F G A B"),
    ("C-b6", "C", "C", "C Eb G Ab", "aeolian", "C D Eb F G Ab Bb"),
    ("C+", "C", "C", "C E G#", "whole tone", "C D E F# G# A#"),
    ("Co^7", "C", "C", "C Eb Gb B", "whole-half diminished", "C D Eb F Gb Ab A B"),
    ("C-#5", "C", "C", "C Eb G#", "aeolian", "C D Eb F G Ab Bb"),
    ("C7#9#11", "C", "C", "C E G Bb D# F#", "half-whole diminished", "C Db Eb E F# G A Bb"),
    ("C7b9sus", "C", "C", "C F G Bb Db", "phrygian", "C Db Eb F G Ab Bb"),
    ("C-11", "C", "C", "C Eb G Bb D F", "dorian", "C D Eb F G A Bb"),
    ("Ch9", "C", "C", "C Eb Gb Bb D", "locrian natural 2", "C D Eb F Gb Ab Bb"),
    ("C2", "C", "C", "C E G D", "ionian", "C D E F G A B"),
    ("C5", "C", "C", "C G", "ionian", "C D E F G A B"),
    # --- WJazzD
    ("Cj7", "C", "C", "C E G B", "ionian", "C D E F G A B"),
    ("C79b", "C", "C", "C E G Bb Db", "half-whole diminished", "C Db Eb E F# G A Bb"),
    ("C79#", "C", "C", "C E G Bb D#", "half-whole diminished", "C Db Eb E F# G A Bb"),
    ("C7911#", "C", "C", "C E G Bb D F#", "lydian dominant", "C D E F# G A Bb"),
    ("Fsus7913", "F", "F", "F Bb C Eb G D", "mixolydian sus4", "F G A Bb C D Eb"),
    ("C-j7", "C", "C", "C Eb G B", "melodic minor", "C D Eb F G A B"),
    ("Co", "C", "C", "C Eb Gb", "whole-half diminished", "C D Eb F Gb Ab A B"),
    ("C+j7", "C", "C", "C E G# B", "lydian augmented", "C D E F# G# A B"),
    ("F79b13b", "F", "F", "F A C Eb Gb Db", "phrygian dominant", "F Gb A Bb C Db Eb"),
    ("Bb79#13", "Bb", "Bb", "Bb D F Ab C# G", "half-whole diminished",
     "Bb B C# D E F G Ab"),
    ("E6911#", "E", "E", "E G# B C# F# A#", "lydian", "E F# G# A# B C# D#"),
    ("Db-69/Ab", "Db", "Ab", "Db E Ab Bb Eb", "melodic minor", "Db Eb E Gb Ab Bb C"),
    ("A-7911", "A", "A", "A C E G B D", "dorian", "A B C D E F# G"),
    ("Bbm7b5", "Bb", "Bb", "Bb Db E Ab", "locrian natural 2", "Bb C Db Eb E Gb Ab"),
    ("D+79#", "D", "D", "D F# A# C F", "altered", "D Eb F F# G# A# C"),
    ("G79b/B", "G", "B", "G B D F Ab", "half-whole diminished", "G Ab Bb B C# D E F"),
    ("Gb7913", "Gb", "Gb", "Gb Bb Db E Ab Eb", "mixolydian", "Gb Ab Bb B Db Eb E"),
    ("Ebj7911#", "Eb", "Eb", "Eb G Bb D F A", "lydian", "Eb F G A Bb C D"),
    ("C#o7", "C#", "C#", "C# E G Bb", "whole-half diminished", "C# D# E F# G A Bb C"),
    ("Asus", "A", "A", "A D E", "mixolydian sus4", "A B C# D E F# G"),
    ("Ab7alt", "Ab", "Ab", "Ab C Gb A B D E", "altered", "Ab A B C D E Gb"),
    ("Dbsus7", "Db", "Db", "Db Gb Ab B", "mixolydian sus4", "Db Eb F Gb Ab Bb B"),
    ("Eb-6", "Eb", "Eb", "Eb Gb Bb C", "melodic minor", "Eb F Gb Ab Bb C D"),
    ("B/G", "B", "G", "B D# F# G", "ionian", "B C# D# E F# G A#"),
]


def test_table_is_big_enough():
    assert len(TABLE) >= 60
    assert len({row[0] for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize(("symbol", "root", "bass", "tones", "name", "scale"), TABLE)
def test_hand_checked_table(symbol, root, bass, tones, name, scale):
    chord = parse_chord(symbol)
    assert chord.symbol == symbol
    assert chord.root == PC[root]
    assert chord.bass == PC[bass]
    assert chord.tones == pcs(tones)
    assert chord.scale_name == name
    assert chord.scale == pcs(scale)
    assert chord.scale[0] == chord.root
    assert set(chord.pentatonic) <= set(chord.scale)
    assert len(chord.pentatonic) == 5


def test_issue_example_dm7():
    chord = parse_chord("Dm7")
    assert chord.tones == (2, 5, 9, 0)
    assert chord.scale == (2, 4, 5, 7, 9, 11, 0)
    assert chord.pentatonic == (2, 5, 7, 9, 0)


@pytest.mark.parametrize(("symbol", "pentatonic"), [
    ("Cmaj7", "C D E G A"),          # major pentatonic
    ("C7", "C D E G Bb"),            # dominant pentatonic
    ("Cm7", "C Eb F G Bb"),          # minor pentatonic
    ("Cm7b5", "C Eb F Gb Bb"),
    ("C7alt", "C Eb E G# Bb"),
    ("C-j7", "C D Eb G A"),
    ("C7sus4", "C D F G Bb"),
])
def test_pentatonic_subsets(symbol, pentatonic):
    assert parse_chord(symbol).pentatonic == pcs(pentatonic)


@pytest.mark.parametrize("spellings", [
    ("Cmaj7", "CM7", "C^7", "Cj7", "CΔ7", "Cma7", "CMaj7"),
    ("Cm7", "Cmin7", "C-7", "Cmi7"),
    ("Cm7b5", "Cø7", "Cø", "Ch7", "Ch", "Cm7(b5)", "C-7b5"),
    ("Cdim7", "Co7", "C°7"),
    ("C7b9", "C79b", "C7(b9)", "C7-9", "C7♭9"),
    ("C7#9", "C79#", "C7(#9)", "C7+9"),
    ("C9#11", "C7911#", "C9(#11)", "C7(9,#11)"),
    ("Cm(maj7)", "C-j7", "C-^7", "CmM7", "Cmmaj7", "Cminmaj7"),
    ("C6/9", "C69", "C6(9)"),
    ("C+", "Caug", "C(#5)"),
    ("C7sus4", "C7sus", "Csus7", "Csus47"),
])
def test_equivalent_spellings(spellings):
    first = parse_chord(spellings[0])
    for other in spellings[1:]:
        chord = parse_chord(other)
        assert (chord.root, chord.tones, chord.scale, chord.scale_name) == (
            first.root, first.tones, first.scale, first.scale_name), other


@pytest.mark.parametrize("symbol", ["NC", "N.C.", "N.C"])
def test_no_chord(symbol):
    chord = parse_chord(symbol)
    assert chord.is_no_chord
    assert chord.root is None and chord.bass is None
    for mode in ("chord-scale", "pentatonic", "chord-tones", "chromatic"):
        assert pitch_classes(chord, mode) == tuple(range(12))


def test_pitch_classes_modes():
    chord = parse_chord("G7")
    assert pitch_classes(chord, "chord-scale") == pcs("G A B C D E F")
    assert pitch_classes(chord, "pentatonic") == pcs("G A B D F")
    assert pitch_classes(chord, "chord-tones") == pcs("G B D F")
    assert sorted(pitch_classes(chord, "chromatic")) == list(range(12))
    with pytest.raises(UserError, match="chord-scale"):
        pitch_classes(chord, "bebop")


@pytest.mark.parametrize(("symbol", "fragment"), [
    ("", "empty"),
    ("H7", "root must be a note"),
    ("c7", "root must be a note"),
    ("Cxyz", "cannot read"),
    ("C7b", "ends in the middle"),
    ("C7b3", "no alteration b3"),
    ("Cmaj7maj", "major written twice"),
    ("C8", "degree"),
    ("C/H", "cannot read"),
    ("C7m", "quality must come before"),
    ("Cmo7", "two qualities"),
    ("Cno9", "only no3 / no5"),
])
def test_bad_symbols_raise_chord_error(symbol, fragment):
    with pytest.raises(ChordError) as info:
        parse_chord(symbol)
    message = str(info.value)
    assert fragment in message
    assert "accepted:" in message
    assert "\n" not in message


def test_parse_is_cached():
    assert parse_chord("Dm7") is parse_chord("Dm7")


def test_every_wjazzd_chord_symbol_parses(wjazzd_path):
    with sqlite3.connect(f"file:{wjazzd_path}?mode=ro", uri=True) as db:
        symbols = [row[0] for row in db.execute(
            "SELECT DISTINCT chord FROM beats WHERE chord IS NOT NULL AND chord != ''")]
    assert len(symbols) >= 395
    for symbol in symbols:
        chord = parse_chord(symbol)
        if chord.is_no_chord:
            continue
        assert set(chord.tones) <= set(chord.scale), symbol
        assert set(chord.pentatonic) <= set(chord.scale), symbol
        assert len(chord.pentatonic) == 5, symbol
        assert 6 <= len(chord.scale) <= 8, symbol
        assert chord.bass in chord.tones, symbol
    print(f"parsed {len(symbols)} distinct WJazzD chord symbols")


# --------------------------------------------------------------------------- properties

ROOTS = ["C", "C#", "Db", "D", "D#", "Eb", "E", "F", "F#", "Gb", "G", "G#", "Ab", "A", "A#",
         "Bb", "B"]
# suffix in standard / iReal spelling, and the same chord in WJazzD spelling
SUFFIXES = [("maj7", "j7"), ("m7", "-7"), ("7", "7"), ("m7b5", "m7b5"), ("dim7", "o7"),
            ("m(maj7)", "-j7"), ("6", "6"), ("m6", "-6"), ("7sus4", "sus7"), ("+7", "+7"),
            ("", ""), ("m", "-"), ("dim", "o"), ("aug", "+"), ("7alt", "7alt"),
            ("maj9", "j79"), ("m9", "-79"), ("9", "79"), ("13", "7913"), ("7b9", "79b"),
            ("7#9", "79#"), ("9#11", "7911#"), ("7b9b13", "79b13b"), ("7#9#11", "79#11#"),
            ("maj7#11", "j711#"), ("m11", "-7911"), ("6/9", "69"),
            ("9sus4", "sus79"), ("13sus4", "sus7913")]


@given(st.text(max_size=12))
@settings(max_examples=400, deadline=None)
def test_random_text_raises_only_chord_error(text):
    try:
        chord = parse_chord(text)
    except ChordError as exc:
        assert "\n" not in str(exc)
        return
    if chord.root is not None:
        assert set(chord.tones) <= set(chord.scale)


@given(st.text(alphabet="ABCDEFGb#-+^jomhø()/,74569123 susaltdadMmin", max_size=10))
@settings(max_examples=600, deadline=None)
def test_chordlike_text_raises_only_chord_error_and_holds_invariants(text):
    try:
        chord = parse_chord(text)
    except ChordError:
        return
    if chord.is_no_chord:
        return
    assert chord.scale[0] == chord.root == chord.tones[0]
    assert len(set(chord.tones)) == len(chord.tones)
    assert set(chord.tones) <= set(chord.scale)
    assert set(chord.pentatonic) <= set(chord.scale) and len(chord.pentatonic) == 5
    assert chord.bass in chord.tones
    assert all(0 <= pc < 12 for pc in chord.scale)


@given(st.sampled_from(ROOTS), st.sampled_from(SUFFIXES))
@settings(max_examples=300, deadline=None)
def test_transposition_and_notation_round_trip(root, suffix):
    standard, wjazzd = suffix
    chord = parse_chord(root + standard)
    in_c = parse_chord("C" + standard)
    shift = PC[root]
    # the same chord on another root is the C chord moved up
    assert chord.root == shift
    assert chord.tones == tuple((pc + shift) % 12 for pc in in_c.tones)
    assert chord.scale == tuple((pc + shift) % 12 for pc in in_c.scale)
    assert chord.pentatonic == tuple((pc + shift) % 12 for pc in in_c.pentatonic)
    assert chord.scale_name == in_c.scale_name
    # the WJazzD spelling means the same chord
    other = parse_chord(root + wjazzd)
    assert (other.tones, other.scale, other.scale_name) == (
        chord.tones, chord.scale, chord.scale_name)
    # the spelled names read back as the same pitch classes
    for pcs_ in (chord.tones, chord.scale):
        names = note_names(chord, pcs_)
        assert names[0] == root
        assert tuple(_pc_of(n) for n in names) == pcs_


@given(st.sampled_from(ROOTS), st.sampled_from(SUFFIXES), st.sampled_from(ROOTS))
@settings(max_examples=200, deadline=None)
def test_slash_bass_round_trip(root, suffix, bass):
    chord = parse_chord(f"{root}{suffix[0]}/{bass}")
    plain = parse_chord(root + suffix[0])
    assert chord.root == plain.root and chord.bass == PC[bass]
    assert chord.tones[: len(plain.tones)] == plain.tones
    assert chord.bass in chord.tones and set(chord.tones) <= set(chord.scale)


def _pc_of(name: str) -> int:
    base = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}[name[0]]
    return (base + name.count("#") - name.count("b")) % 12


# --------------------------------------------------------------------------- spelling

def names(symbol: str, which: str = "tones") -> str:
    chord = parse_chord(symbol)
    return " ".join(note_names(chord, getattr(chord, which)))


def test_seven_sharp_nine_keeps_its_fifth():
    chord = parse_chord("C7#9")
    assert chord.tones == pcs("C E G Bb D#")
    assert names("C7#9") == "C E G Bb D#"
    assert names("D7#9") == "D F# A C F"          # the #9 read as F, not E#


def test_seven_alt_is_the_altered_dominant():
    chord = parse_chord("C7alt")
    assert chord.tones == pcs("C E Bb Db D# F# G#")
    assert 7 not in chord.tones                     # no natural fifth
    assert chord.scale_name == "altered"
    assert names("C7alt") == "C E Bb Db D# F# G#"
    assert names("C7alt", "scale") == "C Db D# E F# G# Bb"


@pytest.mark.parametrize(("symbol", "tones", "scale"), [
    ("Dbm7", "Db Fb Ab Cb", "Db Eb Fb Gb Ab Bb Cb"),      # flats on a flat root
    ("Gb7", "Gb Bb Db Fb", "Gb Ab Bb Cb Db Eb Fb"),
    ("Ebm7", "Eb Gb Bb Db", "Eb F Gb Ab Bb C Db"),
    ("F#7", "F# A# C# E", "F# G# A# B C# D# E"),
    ("Dm7", "D F A C", "D E F G A B C"),
    ("Bo7", "B D F Ab", "B C# D E F G G# A#"),            # one kind of accidental
    ("Cdim7", "C Eb Gb A", "C D Eb F Gb Ab A B"),
    ("G7b9", "G B D F Ab", "G Ab A# B C# D E F"),          # half-whole by degree
    ("C+7", "C E G# Bb", "C D E Gb Ab Bb"),
])
def test_spelling_as_a_jazz_musician_reads_it(symbol, tones, scale):
    assert names(symbol) == tones
    assert names(symbol, "scale") == scale


def test_seven_note_scales_use_each_letter_once():
    for root in ("C", "Db", "D", "Eb", "E", "F", "F#", "Gb", "G", "Ab", "A", "Bb", "B"):
        for quality in ("maj7", "m7", "7", "m7b5", "7#11", "m(maj7)", "7b13", "13", "m6"):
            chord = parse_chord(root + quality)
            if len(chord.scale) != 7:
                continue
            spelled = note_names(chord, chord.scale)
            # Dbm7b5 would need Abb: a theoretical key, spelled by degree instead
            strict = [(pc - PC["CDEFGAB"[("CDEFGAB".index(root[0]) + k) % 7]]) % 12
                      for k, pc in enumerate(chord.scale)]
            if any(d in (2, 10) for d in strict):
                continue
            assert len({n[0] for n in spelled}) == 7, (root + quality, spelled)
            assert all(len(n) <= 2 for n in spelled), (root + quality, spelled)
            assert set(note_names(chord, chord.tones)) <= set(spelled), root + quality
