"""Follow mode's tables and state (live/follow.py): chords from held keys, lines joined at
the nearest note, the chart and the hands."""

from __future__ import annotations

import pytest

from melodyflowd.live.follow import (
    BASS,
    CHORD,
    NONE,
    Follower,
    build_follow,
    chord_index,
    effective_split,
    line_floor,
    roles,
)
from melodyflowd.music.follow import (
    FIRST_SCALES,
    LATER_SCALES,
    SCALE_CHORDS,
    follow_chart,
    follow_charts,
    follow_lines,
    scale_key,
)
from melodyflowd.music.theory import SCALES, parse_chord
from melodyflowd.settings import EngineSettings
from tests.support.follow_bank import make_follow_bank

NAMES = ("C", "Db", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


@pytest.fixture(scope="module")
def program():
    bank, chart = make_follow_bank()
    return build_follow(bank, chart)


def test_the_follow_chart_has_every_chord_scale_in_12_roots():
    chart = follow_chart()
    assert len(chart.bars) == len(SCALES) * 12 == 216
    seen = {(bar.chords[0].chord.root, bar.chords[0].chord.scale_name) for bar in chart.bars}
    assert seen == {(root, name) for root in range(12) for name in SCALES}
    assert set(SCALE_CHORDS) == set(SCALES)


def test_the_two_follow_charts_have_every_chord_scale_once():
    first, later = follow_charts()
    scales = [bar.chords[0].chord.scale_name for bar in first.bars + later.bars]
    assert sorted(set(scales)) == sorted(SCALES) and len(scales) == len(SCALES) * 12
    assert {parse_chord(f"C{s}").scale_name for s in ("maj7", "m7", "7", "m7b5", "7alt")} \
        <= set(FIRST_SCALES)
    assert len(first.bars) == len(FIRST_SCALES) * 12 and set(LATER_SCALES).isdisjoint(
        FIRST_SCALES)


def test_follow_lines_cut_the_bank_per_chord_scale():
    bank, chart = make_follow_bank(3)
    lines = follow_lines(bank, chart)
    assert len(lines) == 216 and all(len(v) == 3 for v in lines.values())
    dorian_d = lines[scale_key(2, "dorian")]
    assert all(p % 12 in parse_chord("Dm7").scale for line in dorian_d for p in line)


def play(follower: Follower, notes: list[int]) -> str:
    for n in notes:
        follower.chord_down(n)
    for n in notes:
        follower.chord_up(n)
    return follower.current.symbol


@pytest.mark.parametrize("tonic", [0, 5, 10])
def test_a_rootless_ii_v_i_is_followed(program, tonic):
    f = Follower(program)
    base = 48 + tonic
    ii = play(f, [base + 2, base + 5, base + 9, base + 12])        # 1-3-5-7 of the ii
    v = play(f, [base + 5, base + 9, base + 11, base + 16])        # 7-9-3-13 of the V
    i = play(f, [base + 4, base + 7, base + 11, base + 14])        # 3-5-7-9 of the I
    assert (ii, v, i) == (NAMES[(tonic + 2) % 12] + "m7", NAMES[(tonic + 7) % 12] + "13",
                          NAMES[tonic] + "maj9")


def test_a_released_chord_holds_and_releasing_names_nothing(program):
    f = Follower(program)
    for n in (50, 53, 57, 60):
        f.chord_down(n)
    assert f.current.symbol == "Dm7"
    f.chord_up(50)                  # F A C left: would be F, but releasing names nothing
    f.chord_up(53)
    assert f.current.symbol == "Dm7"
    f.chord_up(57)
    f.chord_up(60)
    assert f.current.symbol == "Dm7" and not f.held


def test_one_key_or_a_fifth_keeps_the_chord(program):
    f = Follower(program)
    play(f, [48, 52, 55, 59])
    assert play(f, [50]) == "Cmaj7"
    assert play(f, [50, 57]) == "Cmaj7"


def test_the_bass_channel_is_the_lowest_note(program):
    f = Follower(program)
    f.bass_down(43)                 # G
    for n in (53, 57, 59, 64):      # F A B E
        f.chord_down(n)
    assert f.current.symbol == "G13"
    f.bass_up(43)


def test_lines_sit_on_the_chord_and_join_at_the_nearest_note(program):
    f = Follower(program)
    last = -1
    for chord in ([50, 53, 57, 60], [53, 57, 59, 64], [52, 55, 59, 62], [45, 48, 52, 55]):
        play(f, chord)
        scale = set(f.current.scale)
        for k in range(20):                 # past the end of a line: the next is joined
            pitch = f.next_pitch(last)
            assert pitch % 12 in scale
            if k == 0 and last >= 0:
                # joined with the smallest leap the chord's lines offer from `last` (the
                # same pitch again counts as 2.5 semitones)
                lines = program.lines[f.chord].lines
                best = min(abs(p - last) if p != last else 2.5
                           for line in lines for p in line[:-2])
                assert (abs(pitch - last) if pitch != last else 2.5) == best
            last = pitch


def test_before_any_chord_the_default_plays(program):
    f = Follower(program)
    assert f.current.symbol == "Cmaj7"
    assert f.next_pitch(-1) % 12 in parse_chord("Cmaj7").scale


def test_the_played_chord_wins_while_it_differs_from_the_chart(program):
    f = Follower(program)
    g7 = scale_key(7, "mixolydian")
    db7 = scale_key(1, "mixolydian")
    play(f, [47, 53, 55])                         # B F G: G7 as the chart has it
    assert not f.leads(g7, span_end=4.0, beat=2.0)
    play(f, [41, 47, 49])                         # F B Db: Db7, a tritone substitute
    assert f.current.symbol.startswith("Db7")
    assert f.leads(g7, span_end=4.0, beat=2.5)    # differs: the hands win
    assert f.leads(g7, span_end=4.0, beat=3.9)
    # the chart moves on to Cmaj7 with no key held: the chart leads again
    assert not f.leads(scale_key(0, "ionian"), span_end=8.0, beat=4.0)
    # the hands play Db7 again while the chart says Db7: they agree
    play(f, [41, 47, 49])
    assert not f.leads(db7, span_end=12.0, beat=8.5)


def test_a_held_chord_keeps_winning_past_the_span(program):
    f = Follower(program)
    for n in (41, 47, 49):                        # Db7 held down
        f.chord_down(n)
    g7 = scale_key(7, "mixolydian")
    assert f.leads(g7, span_end=4.0, beat=3.0)
    assert f.leads(scale_key(0, "ionian"), span_end=8.0, beat=5.0)   # still held
    assert not f.leads(scale_key(1, "mixolydian"), span_end=8.0, beat=6.0)  # agree


def test_chord_index_finds_a_chart_chord_by_its_scale(program):
    assert program.chords[chord_index(program, parse_chord("G7"))].scale_name == "mixolydian"
    assert chord_index(program, parse_chord("NC")) == -1


def test_roles_and_the_follow_split():
    plain = EngineSettings()
    assert set(roles(plain)) == {NONE} and effective_split(plain) is None
    follow = EngineSettings(follow=True)
    assert effective_split(follow) == 60
    r = roles(follow)
    assert r[59] == CHORD and r[60] == NONE and r[3 * 128 + 40] == CHORD
    channel = EngineSettings(follow=True, chord_channel=1, bass_channel=2)
    r = roles(channel)
    assert effective_split(channel) is None
    assert r[128 + 80] == CHORD and r[40] == NONE and r[2 * 128 + 30] == BASS


def _lines_by_key(program) -> dict[int, tuple[tuple[int, ...], ...]]:
    return {cl.scale_key: cl.lines for cl in program.lines}


def test_the_first_scales_and_the_rest_make_the_same_tables_as_all_at_once():
    whole = build_follow(*make_follow_bank(3))
    first_bank, first = make_follow_bank(3, FIRST_SCALES)
    later = make_follow_bank(3, LATER_SCALES)
    parts = build_follow(first_bank, first, more=[later])
    assert _lines_by_key(parts) == _lines_by_key(whole)


def test_before_the_rest_arrive_a_scale_plays_the_nearest_written_ones_lines():
    bank, chart = make_follow_bank(3, FIRST_SCALES)
    program = build_follow(bank, chart)
    by_key = _lines_by_key(program)
    for symbol, near in (("Fmaj7#11", "Fmaj7"), ("Bb7#11", "Bb7"), ("Em7b9", "Em7"),
                         ("Am(maj7)", "Am7"), ("G7sus4", "G7")):
        chord, other = parse_chord(symbol), parse_chord(near)
        lines = by_key[scale_key(chord.root, chord.scale_name)]
        own = by_key[scale_key(other.root, other.scale_name)]
        assert all(p % 12 in chord.scale for line in lines for p in line), symbol
        # the written scale's lines, a note moved where the scales differ: the same shape
        assert [len(line) for line in lines] == [len(line) for line in own]
        moved = sum(a != b for x, y in zip(lines, own, strict=True)
                    for a, b in zip(x, y, strict=True))
        assert moved > 0 or set(chord.scale) == set(other.scale), symbol
        assert all(abs(a - b) <= 2 for x, y in zip(lines, own, strict=True)
                   for a, b in zip(x, y, strict=True))


@pytest.mark.parametrize("floor", [60, 72])
def test_lines_sit_at_or_above_the_floor_an_octave_at_a_time(floor):
    bank, chart = make_follow_bank(3)
    low = build_follow(bank, chart)
    high = build_follow(bank, chart, floor=floor)
    low_lines, high_lines = _lines_by_key(low), _lines_by_key(high)
    assert min(p for lines in high_lines.values() for line in lines for p in line) >= floor
    for k, lines in low_lines.items():
        for a, b in zip(lines, high_lines[k], strict=True):
            shift = b[0] - a[0]
            assert shift % 12 == 0 and shift >= 0
            assert all(y - x == shift for x, y in zip(a, b, strict=True))
            assert shift == 0 or min(a) < floor       # moved only when it reached below


def test_line_floor_is_the_split_unless_the_chords_have_a_channel():
    assert line_floor(EngineSettings(follow=True)) == 60
    assert line_floor(EngineSettings(follow=True, split=55)) == 55
    assert line_floor(EngineSettings(follow=True, chord_channel=3)) is None


def test_a_borrowed_line_takes_the_scales_own_note_where_they_differ():
    bank, chart = make_follow_bank(3, FIRST_SCALES)
    by_key = _lines_by_key(build_follow(bank, chart))
    lydian = by_key[scale_key(5, "lydian")]                  # F lydian from F ionian
    ionian = by_key[scale_key(5, "ionian")]
    for a, b in zip(ionian, lydian, strict=True):
        assert [y - x for x, y in zip(a, b, strict=True)] == [1 if x % 12 == 10 else 0
                                                               for x in a]
