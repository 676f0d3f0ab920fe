"""Charts: the YAML format (chart.py's docstring), and errors that name file:line:column."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melodyflowd.errors import UserError
from melodyflowd.music.chart import (
    Chart,
    ChartError,
    chart_to_json,
    chart_to_text,
    load_chart,
    parse_chart,
)
from tests.support.wjazzd_charts import split_glued, wjazzd_lead_sheets

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

ALICE_CHART = """\
title: Blues for Alice        # optional
tempo: 180                    # quarter-note bpm, for the internal clock
time: 4/4                     # default 4/4
key: F                        # optional; a hint for the model
style: bebop                  # optional; a hint, and it may pick a LoRA adapter
sections:
  A: "| Fj7 | Em7b5 A7 | Dm7 G7 | Cm7 F7 |"
  B: "| Bb7 | Bbm7 Eb7 | Am7 D7 | Abm7 Db7 | Gm7 | C7 | F6 D7 | Gm7 C7 |"
form: [A, B]                  # optional; default: sections in file order
"""


def parse(text: str) -> Chart:
    return parse_chart(textwrap.dedent(text), "song.yaml")


def error(text: str) -> str:
    with pytest.raises(ChartError) as info:
        parse_chart(textwrap.dedent(text), "song.yaml")
    message = str(info.value)
    assert "\n" not in message
    assert isinstance(info.value, UserError) and info.value.exit_code == 2
    return message


def symbols(chart: Chart) -> list[list[str]]:
    return [[span.chord.symbol for span in bar.chords] for bar in chart.bars]


def layout(chart: Chart, bar: int) -> list[tuple[str, float, float]]:
    return [(s.chord.symbol, s.start_beat, s.beats) for s in chart.bars[bar].chords]


# --------------------------------------------------------------------------- the format

def test_design_example():
    chart = parse_chart(ALICE_CHART, "alice.yaml")
    assert chart.title == "Blues for Alice"
    assert chart.tempo == 180.0
    assert chart.time == (4, 4) and chart.beats_per_bar == 4.0
    assert chart.key == "F" and chart.style == "bebop"
    assert chart.source == "alice.yaml"
    assert len(chart.bars) == 12
    assert [bar.index for bar in chart.bars] == list(range(12))
    assert [bar.section for bar in chart.bars] == ["A"] * 4 + ["B"] * 8
    assert symbols(chart)[1] == ["Em7b5", "A7"]
    assert layout(chart, 1) == [("Em7b5", 0.0, 2.0), ("A7", 2.0, 2.0)]
    assert chart.chord_at(1, 1.99).symbol == "Em7b5"
    assert chart.chord_at(1, 2.0).symbol == "A7"
    # the form loops
    assert chart.bar_at(12) is chart.bars[0]
    assert chart.chord_at(13, 3.0).symbol == "A7"


def test_form_order_and_repeats():
    chart = parse("""
        sections:
          A: "| C | G7 |"
          B: "| F | F |"
        form: [A, A, B, A]
    """)
    assert [bar.section for bar in chart.bars] == list("AAAABBAA")
    assert symbols(chart)[4] == ["F"]
    assert chart.form == ("A", "A", "B", "A")


def test_form_as_text_and_default_form():
    chart = parse("""
        sections:
          B: "| F |"
          A: "| C |"
        form: A A, B
    """)
    assert [bar.section for bar in chart.bars] == ["A", "A", "B"]
    default = parse("""
        sections:
          B: "| F |"
          A: "| C |"
    """)
    assert [bar.section for bar in default.bars] == ["B", "A"]


def test_chords_shorthand_repeat_and_no_chord():
    chart = parse('chords: "| Dm7 G7 | Cmaj7 | % | NC |"')
    assert chart.title == "song" and chart.tempo == 120.0 and chart.time == (4, 4)
    assert chart.key is None and chart.style is None
    assert symbols(chart) == [["Dm7", "G7"], ["Cmaj7"], ["Cmaj7"], ["NC"]]
    assert [bar.section for bar in chart.bars] == [""] * 4
    assert chart.bars[3].chords[0].chord.is_no_chord


def test_even_split_and_beat_counts():
    chart = parse('chords: "| C7:3 F7:1 | C F G | C F G A | C7 / F7 / | Bb7 F7:1 | C D E F G |"')
    assert layout(chart, 0) == [("C7", 0.0, 3.0), ("F7", 3.0, 1.0)]
    assert layout(chart, 1) == [("C", 0.0, 2.0), ("F", 2.0, 1.0), ("G", 3.0, 1.0)]
    assert layout(chart, 2) == [("C", 0, 1), ("F", 1, 1), ("G", 2, 1), ("A", 3, 1)]
    assert layout(chart, 3) == [("C7", 0.0, 2.0), ("F7", 2.0, 2.0)]
    assert layout(chart, 4) == [("Bb7", 0.0, 3.0), ("F7", 3.0, 1.0)]
    five = layout(chart, 5)
    assert [c for c, _, _ in five] == list("CDEFG")
    assert [s for _, s, _ in five] == pytest.approx([0.0, 0.8, 1.6, 2.4, 3.2])
    assert [b for _, _, b in five] == pytest.approx([0.8] * 5)


@pytest.mark.parametrize(("time", "bar", "expected", "length"), [
    ("3/4", "| C F |", [("C", 0.0, 2.0), ("F", 2.0, 1.0)], 3.0),
    ("3/4", "| C:1 F:2 |", [("C", 0.0, 1.0), ("F", 1.0, 2.0)], 3.0),
    ("5/4", "| Ebm7:3 Bbm7:2 |", [("Ebm7", 0.0, 3.0), ("Bbm7", 3.0, 2.0)], 5.0),
    ("5/4", "| Dm |", [("Dm", 0.0, 5.0)], 5.0),
    # counts are in the signature's unit: eighths in 6/8, a chart's beats are quarters
    ("6/8", "| C:3 G7:3 |", [("C", 0.0, 1.5), ("G7", 1.5, 1.5)], 3.0),
    ("6/8", "| C G7 |", [("C", 0.0, 1.5), ("G7", 1.5, 1.5)], 3.0),
    ("12/8", "| C |", [("C", 0.0, 6.0)], 6.0),
    ("2/2", "| C:1 G7:1 |", [("C", 0.0, 2.0), ("G7", 2.0, 2.0)], 4.0),
])
def test_time_signatures(time, bar, expected, length):
    chart = parse(f'time: {time}\nchords: "{bar}"\n')
    assert chart.beats_per_bar == length
    assert layout(chart, 0) == expected
    assert sum(span.beats for span in chart.bars[0].chords) == pytest.approx(length)


def test_multiline_bars_and_double_bar_lines():
    chart = parse("""
        chords: |
          || Fj7 | Em7b5 A7 |
          | Dm7 G7 | Cm7 F7 ||
    """)
    assert symbols(chart) == [["Fj7"], ["Em7b5", "A7"], ["Dm7", "G7"], ["Cm7", "F7"]]
    folded = parse("""
        chords: "| C | F |
          | G | C |"
    """)
    assert len(folded.bars) == 4
    listed = parse("""
        sections:
          A:
            - "| C | F |"
            - "| G7 | C |"
    """)
    assert symbols(listed) == [["C"], ["F"], ["G7"], ["C"]]


def test_bars_without_outer_bar_lines_and_other_notations():
    chart = parse('chords: "C^7 A-7 | D-7 G7alt | Cj7911# | Fsus7913"')
    assert symbols(chart) == [["C^7", "A-7"], ["D-7", "G7alt"], ["Cj7911#"], ["Fsus7913"]]


def test_tempo_float_and_key_spellings():
    for key in ("F", "Bb", "F#m", "C minor", "Bb-maj", "D dorian", "Eb-", "Ab"):
        chart = parse(f'tempo: 92.5\nkey: {key}\nchords: "| C |"\n')
        assert chart.key == key and chart.tempo == 92.5


def test_examples_parse():
    paths = sorted(EXAMPLES.glob("*.yaml"))
    assert len(paths) >= 5
    for path in paths:
        chart = load_chart(str(path))
        assert chart.bars, path
        data = chart_to_json(chart)
        json.dumps(data)
        for bar in chart.bars:
            total = sum(span.beats for span in bar.chords)
            assert total == pytest.approx(chart.beats_per_bar), (path, bar.index)


def test_blues_example():
    chart = load_chart(str(EXAMPLES / "blues.yaml"))
    assert len(chart.bars) == 12 and chart.key == "F" and chart.style == "bebop"
    assert chart.bars[0].chords[0].chord.root == 5


def test_ii_v_i_example_covers_all_keys():
    chart = load_chart(str(EXAMPLES / "ii-v-i-all-keys.yaml"))
    tonics = {bar.chords[0].chord.root for bar in chart.bars
              if bar.chords[0].chord.scale_name == "ionian"}
    assert tonics == set(range(12))


# --------------------------------------------------------------------------- output

def test_chart_to_json_shape():
    chart = parse("""
        title: T
        tempo: 180
        key: F
        style: bebop
        sections:
          A: "| Dm7 G7 | NC |"
    """)
    data = chart_to_json(chart)
    assert data == {
        "title": "T", "tempo": 180, "time": [4, 4], "key": "F", "style": "bebop",
        "bars": [
            {"index": 0, "section": "A", "chords": [
                {"symbol": "Dm7", "start_beat": 0, "beats": 2, "root": 2, "bass": 2,
                 "tones": [2, 5, 9, 0], "scale": [2, 4, 5, 7, 9, 11, 0],
                 "pentatonic": [2, 5, 7, 9, 0]},
                {"symbol": "G7", "start_beat": 2, "beats": 2, "root": 7, "bass": 7,
                 "tones": [7, 11, 2, 5], "scale": [7, 9, 11, 0, 2, 4, 5],
                 "pentatonic": [7, 9, 11, 2, 5]}]},
            {"index": 1, "section": "A", "chords": [
                {"symbol": "NC", "start_beat": 0, "beats": 4, "root": None, "bass": None,
                 "tones": [], "scale": [], "pentatonic": []}]},
        ]}
    assert json.loads(json.dumps(data)) == data


def test_chart_to_text_one_line_a_bar():
    chart = parse_chart(ALICE_CHART, "alice.yaml")
    text = chart_to_text(chart)
    lines = text.rstrip("\n").split("\n")
    assert len(lines) == 1 + len(chart.bars)
    assert "Blues for Alice" in lines[0] and "180" in lines[0]
    assert "Em7b5 (2): E G Bb D" in lines[2]
    assert "A7 (2): A C# E G" in lines[2]
    assert "locrian natural 2" in lines[2]
    assert text.endswith("\n")


# --------------------------------------------------------------------------- errors

def test_unknown_chord_symbol_names_line_column_and_token():
    message = error("""\
        title: x
        sections:
          A: "| Fj7 | Em7b5 Xq7 |"
    """)
    # line 3, and the column of X inside the quoted string
    assert message.startswith("song.yaml:3:21: ")
    assert "'Xq7'" in message and "accepted:" in message


def test_column_in_plain_and_block_scalars():
    plain = error("chords: C | Zz |\n")
    assert plain.startswith("song.yaml:1:13: ") and "'Zz'" in plain
    block = error("""\
        chords: |
          | C | G7 |
          | F | Qm |
    """)
    assert block.startswith("song.yaml:3:9: ") and "'Qm'" in block


def test_beats_overflow_a_bar():
    message = error('time: 3/4\nchords: "| C | C7:2 F7:2 |"\n')
    assert message.startswith("song.yaml:2:21: ")
    assert "'F7:2'" in message and "overflow" in message and "3/4" in message
    message = error('chords: "| C7:4 F7 |"\n')
    assert message.startswith("song.yaml:1:12: ") and "'C7:4'" in message


def test_short_bar_and_bad_counts():
    message = error('chords: "| C7:2 F7:1 |"\n')
    assert message.startswith("song.yaml:1:17: ") and "short" in message
    message = error('chords: "| C7:x F7 |"\n')
    assert message.startswith("song.yaml:1:15: ") and "'x'" in message
    message = error('chords: "| C7:0 F7 |"\n')
    assert "positive number" in message


def test_empty_bar():
    message = error('chords: "| C | | F |"\n')
    assert message.startswith("song.yaml:1:16: ") and "empty bar" in message
    assert "'%'" in message


def test_repeat_errors():
    assert "no previous bar" in error('chords: "| % | C |"\n')
    assert "alone in its bar" in error('chords: "| C | % F |"\n')
    assert "no chord to extend" in error('chords: "| / C |"\n')


def test_unknown_section_in_form():
    message = error("""\
        sections:
          A: "| C |"
          B: "| F |"
        form: [A, C, B]
    """)
    assert message.startswith("song.yaml:4:11: ")
    assert "'C'" in message and "sections are A, B" in message
    message = error("""\
        sections:
          A: "| C |"
        form: A Z
    """)
    assert message.startswith("song.yaml:3:9: ") and "'Z'" in message


@pytest.mark.parametrize("value", ["4", "four/4", "4/3", "0/4", "4/0", "33/4", "[4, 4]", "7/5"])
def test_bad_time_signature(value):
    message = error(f'time: {value}\nchords: "| C |"\n')
    assert message.startswith("song.yaml:1:7: ")
    assert "time" in message and "4/4, 3/4, 6/8" in message


@pytest.mark.parametrize("value", ["0", "-120", "fast", "true", ".nan", "5000", "[120]"])
def test_tempo_not_a_positive_number(value):
    message = error(f'tempo: {value}\nchords: "| C |"\n')
    assert message.startswith("song.yaml:1:8: ")
    assert "tempo" in message and "positive number" in message


def test_wrong_yaml_types():
    message = error('- chords\n- "| C |"\n')
    assert message.startswith("song.yaml:1:1: ") and "wrong YAML type" in message
    message = error('sections:\n  - "| C |"\n')
    assert message.startswith("song.yaml:2:3: ") and "sections" in message
    message = error("chords: 42\n")
    assert message.startswith("song.yaml:1:9: ") and "wrong YAML type" in message
    message = error('title: [a, b]\nchords: "| C |"\n')
    assert message.startswith("song.yaml:1:8: ") and "title" in message
    message = error('sections:\n  A: {x: 1}\n')
    assert message.startswith("song.yaml:2:6: ") and "section A" in message


def test_unknown_key():
    message = error('tempo: 100\ntempi: 120\nchords: "| C |"\n')
    assert message.startswith("song.yaml:2:1: ")
    assert "'tempi'" in message and "title, tempo, time" in message


def test_duplicate_key_and_conflicting_keys():
    assert error('tempo: 1\ntempo: 2\nchords: "| C |"\n').startswith("song.yaml:2:1: ")
    message = error('chords: "| C |"\nsections:\n  A: "| C |"\n')
    assert "both chords: and sections:" in message


@pytest.mark.parametrize("text", ["", "\n\n", "# just a comment\n", "~\n"])
def test_empty_chart(text):
    message = error(text)
    assert message.startswith("song.yaml") and "empty chart" in message


def test_chart_without_chords():
    message = error("title: nothing\ntempo: 100\n")
    assert message.startswith("song.yaml:1:1: ") and "no chords: or sections:" in message
    assert "no bars" in error('chords: "||"\n')


@pytest.mark.parametrize(("text", "where"), [
    ("chords: [| C |\n", "song.yaml:1:"),
    ("title: a\n  b: c: d\n", "song.yaml:2:"),
    ('chords: "| C |\n', "song.yaml:2:"),
    ("chords: @x\n", "song.yaml:1:"),
])
def test_not_yaml(text, where):
    message = error(text)
    assert message.startswith(where) and "not a YAML chart" in message


def test_bad_key():
    message = error('key: H\nchords: "| C |"\n')
    assert message.startswith("song.yaml:1:6: ") and "'H'" in message


def test_load_chart_files(tmp_path):
    with pytest.raises(ChartError, match="no such chart file"):
        load_chart(str(tmp_path / "missing.yaml"))
    binary = tmp_path / "song.mid"
    binary.write_bytes(b"MThd\x00\x00\x00\x06\x00\x01\xff\xfe")
    with pytest.raises(ChartError, match="not a YAML chart"):
        load_chart(str(binary))
    good = tmp_path / "tune.yaml"
    good.write_text('chords: "| C |"\n')
    assert load_chart(str(good)).title == "tune"
    with pytest.raises(ChartError, match="directory"):
        load_chart(str(tmp_path))


# --------------------------------------------------------------------------- WJazzD

def test_split_glued_chords():
    assert split_glued("A-7D7") == ["A-7", "D7"]
    assert split_glued("D-7/FG7C-7F7") == ["D-7/F", "G7", "C-7", "F7"]
    assert split_glued("Bb7NC") == ["Bb7", "NC"]
    assert split_glued("B-Bb") == ["B-", "Bb"]


def test_every_wjazzd_lead_sheet_is_a_valid_chart(wjazzd_path):
    sheets = wjazzd_lead_sheets(wjazzd_path)
    assert len(sheets) >= 400
    bars = 0
    for melid, text in sheets:
        chart = parse_chart(text, f"wjazzd-{melid}.yaml")
        assert chart.bars
        for bar in chart.bars:
            assert sum(s.beats for s in bar.chords) == pytest.approx(chart.beats_per_bar)
        bars += len(chart.bars)
    print(f"validated {len(sheets)} WJazzD lead sheets as charts ({bars} bars)")


# --------------------------------------------------------------------------- properties

CHORDS = ["C", "Dm7", "G7", "Cmaj7", "F#m7b5", "B79b", "Eb^7", "Ab-6", "NC", "Bbsus7913"]


@given(st.text(max_size=80))
@settings(max_examples=300, deadline=None)
def test_random_text_raises_only_chart_error(text):
    try:
        chart = parse_chart(text, "fuzz.yaml")
    except ChartError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.yaml")
        return
    assert chart.bars


@given(st.text(alphabet='|%:/ 0123456789CDEFGmaj7b#-"\n\t', max_size=40))
@settings(max_examples=300, deadline=None)
def test_random_bars_raise_only_chart_error(body):
    try:
        chart = parse_chart(f"chords: {json.dumps(body)}\n", "fuzz.yaml")
    except ChartError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("fuzz.yaml:")
        return
    for bar in chart.bars:              # a meter mark ("2/4 C") gives a bar its own length
        num, den = bar.time or chart.time
        assert sum(s.beats for s in bar.chords) == pytest.approx(num * 4 / den)


@st.composite
def written_charts(draw):
    num = draw(st.integers(1, 7))
    den = draw(st.sampled_from([2, 4, 8]))
    bars = []
    for _ in range(draw(st.integers(1, 6))):
        n = draw(st.integers(1, 4))
        chords = [draw(st.sampled_from(CHORDS)) for _ in range(n)]
        counted = draw(st.booleans()) and n <= num
        if counted:               # split num into n positive counts
            cuts = sorted(draw(st.lists(st.integers(1, num - 1), min_size=n - 1,
                                        max_size=n - 1, unique=True))) if n > 1 else []
            edges = [0, *cuts, num]
            counts = [b - a for a, b in zip(edges, edges[1:], strict=False)]
            bars.append([(c, k) for c, k in zip(chords, counts, strict=True)])
        else:
            bars.append([(c, None) for c in chords])
    return num, den, bars


@given(written_charts())
@settings(max_examples=200, deadline=None)
def test_written_bars_round_trip(case):
    num, den, bars = case
    body = " | ".join(" ".join(c if k is None else f"{c}:{k}" for c, k in bar) for bar in bars)
    chart = parse_chart(f'time: {num}/{den}\nchords: "| {body} |"\n', "rt.yaml")
    assert chart.time == (num, den)
    assert len(chart.bars) == len(bars)
    unit = 4 / den
    for bar, written in zip(chart.bars, bars, strict=True):
        assert [s.chord.symbol for s in bar.chords] == [c for c, _ in written]
        assert sum(s.beats for s in bar.chords) == pytest.approx(num * unit)
        position = 0.0
        for span, (_, count) in zip(bar.chords, written, strict=True):
            assert span.start_beat == pytest.approx(position)
            assert span.beats > 0
            if count is not None:
                assert span.beats == pytest.approx(count * unit)
            position += span.beats
        # chord_at agrees with the spans
        for span in bar.chords:
            assert bar.chord_at(span.start_beat + span.beats / 2) is span.chord


# --------------------------------------------------------------------------- what imports need

def test_repeats_and_endings_unroll_inside_a_section():
    chart = parse('''\
        sections:
          A: "|: C | F | 1. G7 | G7 :| 2. G7 | C |"
          B: "|: Dm7 | G7 :|x3"
        ''')
    assert symbols(chart) == [["C"], ["F"], ["G7"], ["G7"], ["C"], ["F"], ["G7"], ["C"],
                              ["Dm7"], ["G7"], ["Dm7"], ["G7"], ["Dm7"], ["G7"]]
    assert [b.index for b in chart.bars] == list(range(14))


def test_a_repeat_without_start_goes_to_the_top_of_its_section():
    chart = parse('chords: "| C | F :| G |"\n')
    assert symbols(chart) == [["C"], ["F"], ["C"], ["F"], ["G"]]


def test_meter_mark_holds_for_the_rest_of_its_section():
    chart = parse('''\
        time: 4/4
        sections:
          A: "| C | 3/4 F G:2 | Bb | 4/4 C |"
          B: "| D |"
        ''')
    assert [b.time for b in chart.bars] == [None, (3, 4), (3, 4), None, None]
    assert layout(chart, 1) == [("F", 0.0, 1.0), ("G", 1.0, 2.0)]
    assert layout(chart, 2) == [("Bb", 0.0, 3.0)]
    assert chart.warnings == ()          # every bar plays at its own length
    assert [chart.bar_beats(i) for i in range(5)] == [4.0, 3.0, 3.0, 4.0, 4.0]
    assert chart.bar_starts == (0.0, 4.0, 7.0, 10.0, 14.0, 18.0)
    assert chart.form_beats == 18.0 and chart.beats_per_bar == 4.0


def test_bar_positions_loop_over_a_form_of_mixed_meters():
    chart = parse('chords: "| C | 2/4 F | 6/8 G | 4/4 A |"\n')
    assert chart.bar_starts == (0.0, 4.0, 6.0, 9.0, 13.0)
    assert [chart.bar_start(n) for n in range(6)] == [0.0, 4.0, 6.0, 9.0, 13.0, 17.0]
    assert chart.bar_beats(6) == 3.0                       # bar 6 is the 6/8 bar again
    assert chart.locate(0.0) == (0, 0.0)
    assert chart.locate(5.5) == (1, 1.5)
    assert chart.locate(6.0) == (2, 0.0)
    assert chart.locate(8.99) == (2, pytest.approx(2.99))
    assert chart.locate(13.0 + 6.5) == (6, 0.5)            # second time through
    for n in range(12):
        assert chart.locate(chart.bar_start(n)) == (n, 0.0)


def test_alternate_chord_in_parentheses():
    chart = parse('chords: "| C7 (Gb7) | F^7 |"\n')
    span = chart.bars[0].chords[0]
    assert span.chord.symbol == "C7" and span.alternate.symbol == "Gb7"
    assert span.alternate.tones == (6, 10, 1, 4)
    assert chart.bars[1].chords[0].alternate is None
    assert "(Gb7)" not in [s.chord.symbol for s in chart.bars[0].chords]
    assert "alternate" in error('chords: "| (Gb7) C7 |"\n')


def test_empty_bar_holds_the_chord_before_it_across_sections():
    chart = parse('''\
        sections:
          A: "| C | D7 G7 |"
          B: "| _ | C |"
        form: [A, B, B]
        ''')
    assert symbols(chart) == [["C"], ["D7", "G7"], ["G7"], ["C"], ["C"], ["C"]]
    assert [b.empty for b in chart.bars] == [False, False, True, False, True, False]
    first = parse('chords: "| _ | C |"\n')
    assert first.bars[0].chords[0].chord.is_no_chord and first.bars[0].empty


def test_suspicious_bars_are_warnings_with_file_and_line():
    chart = parse('''\
        title: T
        chords: |
          | C7, | F |
          | C D E F G |
        ''')
    assert symbols(chart)[0] == ["C7,"]
    assert chart.bars[0].chords[0].chord.tones == (0, 4, 7, 10)
    stray, crowded = chart.warnings
    assert stray.startswith("song.yaml:3:5: ") and "stray punctuation" in stray
    assert crowded.startswith("song.yaml:4:5: ") and "5 chords in a bar of 4 beats" in crowded
    assert parse('chords: "| N.C. | C7 |"\n').warnings == ()
    nothing, = parse('chords: "| NC | _ |"\n').warnings
    assert nothing.startswith("song.yaml:1:1: no chord in the chart")


def test_every_example_chart_has_no_warning():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        assert load_chart(str(path)).warnings == (), path


@pytest.mark.parametrize(("text", "needle"), [
    ('chords: "| C | 1. |"\n', "ending 1. has no bar"),
    ('chords: ":| C |"\n', "no bar before it"),
    ('chords: "| C :|x99"\n', "bad repeat count"),
    ('chords: "| 3/5 C |"\n', "bad time signature '3/5'"),
    ('chords: "| _ C |"\n', "'_' must be alone"),
])
def test_new_signs_have_clear_errors(text, needle):
    assert needle in error(text)
