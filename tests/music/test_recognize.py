"""The chord recognizer: a table of voicings in all 12 keys, the context, the lookup table."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melodyflowd.music.recognize import (
    NO_CONTEXT,
    RecognitionTable,
    context_index,
    held_key,
    parse_key,
    recognize,
)
from melodyflowd.music.theory import parse_chord

NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")

# (what it is, intervals above the voicing's reference C (48 + root), the chord a pianist
#  names: (root offset, scale), the lowest note when it is an inversion or slash chord,
#  the previous chord (root offset, suffix) or None, the key's tonic offset or None).
# Worked out by hand, in C; the test plays each in all 12 roots.
VOICINGS = [
    ("maj7 root position", (0, 4, 7, 11), (0, "ionian"), None, None, None),
    ("maj7 first inversion", (4, 7, 11, 12), (0, "ionian"), 4, None, None),
    ("maj7 third inversion", (11, 12, 16, 19), (0, "ionian"), 11, None, None),
    ("dominant 1-5-7-3 spread", (0, 7, 10, 16), (0, "mixolydian"), None, None, None),
    ("dominant second inversion", (7, 10, 12, 16), (0, "mixolydian"), 7, None, None),
    ("shell 1-3-7 dominant", (0, 4, 10), (0, "mixolydian"), None, None, None),
    ("shell 1-7-3 minor", (0, 10, 15), (0, "dorian"), None, None, None),
    ("shell 1-7-3 major", (0, 11, 16), (0, "ionian"), None, None, None),
    ("shell 1-3-6", (0, 4, 9), (0, "ionian"), None, None, None),
    ("m7 root position", (0, 3, 7, 10), (0, "dorian"), None, None, None),
    ("rootless A m9 after its V", (3, 7, 10, 14), (0, "dorian"), None, (7, "7"), None),
    ("rootless B m9 after its V", (10, 14, 15, 19), (0, "dorian"), None, (7, "7"), None),
    ("rootless A 13 after its ii", (10, 14, 16, 21), (0, "mixolydian"), None, (7, "m7"),
     None),
    ("rootless B 13 after its ii", (4, 9, 10, 14), (0, "mixolydian"), None, (7, "m7"),
     None),
    ("rootless A maj9 after its V", (4, 7, 11, 14), (0, "ionian"), None, (7, "7"), None),
    ("rootless B maj9 after its V", (11, 14, 16, 19), (0, "ionian"), None, (7, "7"), None),
    ("rootless 3-6-9 after its V", (4, 9, 14), (0, "ionian"), None, (7, "7"), None),
    ("rootless 3-note 3-7-9 after its ii", (4, 10, 14), (0, "mixolydian"), None,
     (7, "m7"), None),
    ("rootless altered 3-7-#9-b13", (4, 10, 15, 20), (0, "altered"), None, (7, "m7b5"),
     None),
    ("rootless 13(b9) 3-13-7-b9", (4, 9, 10, 13), (0, "half-whole diminished"), None,
     (7, "m7"), None),
    ("m7b5 root position", (0, 3, 6, 10), (0, "locrian natural 2"), None, None, None),
    ("dim7", (0, 3, 6, 9), (0, "whole-half diminished"), None, None, None),
    ("quartal So What (m11)", (0, 5, 10, 15, 19), (0, "dorian"), None, None, None),
    ("quartal 1-4-7-3 (m11)", (0, 5, 10, 15), (0, "dorian"), None, None, None),
    ("quartal 3-6-9-5 (6/9) after its V", (4, 9, 14, 19), (0, "ionian"), None, (7, "7"),
     0),
    ("upper structure II over 3-7 (13#11)", (4, 10, 14, 18, 21), (0, "lydian dominant"),
     None, (7, "m7"), None),
    ("upper structure bVI over 3-7 (alt)", (4, 10, 20, 24, 27), (0, "altered"), None,
     (7, "m7b5"), None),
    ("slash II/I (lydian)", (0, 14, 18, 21), (0, "lydian"), 0, None, None),
    ("slash bVII/I (9sus4)", (0, 10, 14, 17), (0, "mixolydian sus4"), 0, None, None),
    ("slash #IV/I (7b9#11)", (0, 18, 22, 25), (0, "half-whole diminished"), 0, None, None),
    ("slash III/I (maj7#5)", (0, 16, 20, 23), (0, "lydian augmented"), 0, None, None),
    ("major triad", (0, 4, 7), (0, "ionian"), None, None, None),
    ("major triad first inversion", (4, 7, 12), (0, "ionian"), 4, None, None),
    ("major triad second inversion", (7, 12, 16), (0, "ionian"), 7, None, None),
    ("minor triad", (0, 3, 7), (0, "dorian"), None, None, None),
    ("7sus4", (0, 5, 7, 10), (0, "mixolydian sus4"), None, None, None),
    ("m(maj7)", (0, 3, 7, 11), (0, "melodic minor"), None, None, None),
    ("tritone dyad after its ii", (4, 10), (0, "mixolydian"), None, (7, "m7"), None),
    ("tritone substitute: ii then subV 1-3-7-9", (0, 4, 10, 14), (0, "mixolydian"), None,
     (1, "m7"), None),
]


def _cases():
    for name, intervals, (offset, scale), lowest, previous, key in VOICINGS:
        for root in range(12):
            yield pytest.param(name, root, intervals, (root + offset) % 12, scale,
                               None if lowest is None else (root + lowest) % 12,
                               previous, key, id=f"{name} on {NAMES[root]}")


def test_the_table_has_at_least_150_voicings_in_all_12_roots():
    cases = list(_cases())
    assert len(cases) >= 150
    assert {case.values[1] for case in cases} == set(range(12))


@pytest.mark.parametrize("name,root,intervals,want_root,scale,lowest,previous,key",
                         list(_cases()))
def test_voicing(name, root, intervals, want_root, scale, lowest, previous, key):
    base = 48 + root
    notes = [base + i for i in intervals]
    prev = None
    if previous is not None:
        prev = parse_chord(NAMES[(root + previous[0]) % 12] + previous[1])
    key_text = None if key is None else NAMES[(root + key) % 12]
    chord = recognize(notes, previous=prev, key=key_text)
    assert chord is not None, name
    assert (chord.root, chord.scale_name) == (want_root, scale), chord.symbol
    if lowest is not None:
        assert chord.bass == lowest or chord.symbol.endswith("/" + NAMES[lowest]), \
            chord.symbol
    assert set(chord.tones) <= set(chord.scale)
    # the notes held sit on the chord's scale, except a held avoid tone a voicing can have
    assert sum(n % 12 not in chord.scale for n in notes) <= 1


def test_the_same_notes_read_by_context():
    # F A B E: Fmaj7#11 on its own, G13 after Dm7 (ii -> V), Db-free.
    notes = [53, 57, 59, 64]
    assert recognize(notes).symbol == "Fmaj7#11"
    assert recognize(notes, previous=parse_chord("Dm7")).symbol == "G13"
    # F A C E: Fmaj7, or Dm9 after A7 (V of ii)
    assert recognize([53, 57, 60, 64]).symbol == "Fmaj7"
    assert recognize([53, 57, 60, 64], previous=parse_chord("A7")).symbol == "Dm9"
    # C Eb G A: Cm6 in C minor, Am7b5 / C... the lowest note and the key both count
    assert recognize([48, 51, 55, 57], key="Cm").scale_name == "melodic minor"


def test_a_bass_on_its_own_channel_is_the_lowest_note():
    # F A B E over a bass G: G13, whatever octave the bass is in
    assert recognize([53, 57, 59, 64], bass=79).symbol == "G13"
    assert recognize([53, 57, 59, 64], bass=31).symbol == "G13"
    # E G B D over C: Cmaj9
    assert recognize([52, 55, 59, 62], bass=36).symbol == "Cmaj9"


def test_no_chord_for_one_note_a_plain_dyad_or_a_cluster():
    assert recognize([]) is None
    assert recognize([60]) is None
    assert recognize([60, 67]) is None              # a fifth names no chord
    assert recognize(range(60, 72)) is None         # all twelve


def test_octaves_do_not_matter_except_the_lowest_note():
    assert recognize([38, 53, 57, 60, 65]).symbol == "Dm7"
    assert recognize([45, 50, 53, 60]).symbol == "Dm7/A"
    assert recognize([41, 50, 57, 60]).symbol == "F6"


def test_parse_key():
    assert parse_key("F") == parse_key("F major")
    assert parse_key("Dm").minor and parse_key("D minor").minor and parse_key("C-").minor
    assert parse_key("Bb-maj").tonic == 10 and not parse_key("Bb-maj").minor
    assert parse_key(None) is None


@pytest.fixture(scope="module")
def tables():
    return {None: RecognitionTable(None), "C": RecognitionTable("C")}


@settings(max_examples=300, deadline=None)
@given(notes=st.lists(st.integers(36, 84), min_size=1, max_size=8),
       previous=st.sampled_from([None, "Dm7", "G7", "Cmaj7", "F#m7b5", "B7", "Ebm7",
                                 "Ab7", "Bbsus4", "Edim7"]),
       key=st.sampled_from([None, "C"]))
def test_the_lookup_table_answers_as_recognize(tables, notes, previous, key):
    prev = parse_chord(previous) if previous else None
    want = recognize(notes, previous=prev, key=key)
    got = tables[key].lookup(held_key(notes), context_index(prev))
    assert (got.symbol if got else None) == (want.symbol if want else None)


def test_context_of_no_chord():
    assert context_index(None) == NO_CONTEXT
    assert context_index(parse_chord("NC")) == NO_CONTEXT
