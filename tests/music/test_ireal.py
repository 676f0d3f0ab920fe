"""iReal Pro import: links we write here, and real playlists checked bar by bar by hand.

The hand-checked tunes below were read from the source music string (unscrambled, with
XyQ/Kcl/LZ expanded) cell by cell: the bars, the repeats and endings, x and r, the
D.C./D.S. and coda jumps, and the beats where a bar's cells give them. The expectations
were written from that reading, not from the importer's output.
"""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melodyflowd.errors import UserError
from melodyflowd.music.chart import parse_chart
from melodyflowd.music.ireal import (
    MARKER,
    _unscramble,
    find_links,
    parse_link,
    read_link_text,
    song_to_sheet,
    style_adapter,
)
from melodyflowd.music.leadsheet import to_yaml
from melodyflowd.music.sources import load_chart, read_tunes
from tests.support.ireal_data import bars_text, ireal_dir


def old_link(title: str, music: str, style: str = "Medium Swing", key: str = "C") -> str:
    """An irealbook:// link (the old form: music not scrambled)."""
    return "irealbook://" + urllib.parse.quote(f"{title}=Composer Name={style}={key}=n={music}")


def new_link(title: str, music: str, style: str = "Medium Swing", key: str = "C",
             tempo: int = 0) -> str:
    """An irealb:// link: the music scrambled (the block scramble undoes itself)."""
    fields = [title, "Composer Name", "", style, key, "", MARKER + _unscramble(music),
              "Jazz-Medium Swing", str(tempo), "1"]
    return "irealb://" + urllib.parse.quote("=".join(fields))


def chart_of(link: str):
    (title, sheet), = read_link_text(link)
    assert not isinstance(sheet, UserError), sheet
    return parse_chart(to_yaml(sheet), title)


# --------------------------------------------------------------------------- links we write

def test_unscramble_undoes_the_scramble_of_long_music():
    music = "[*AT44" + "C^7   |A-7   |D-7   |G7   |" * 12 + "Z"
    assert _unscramble(_unscramble(music)) == music
    assert _unscramble(music) != music
    link = new_link("Long", music, tempo=160)
    song, = parse_link(link)
    assert song.music == music and song.tempo == 160.0 and song.title == "Long"


def test_cells_give_beats_and_small_chords_count():
    chart = chart_of(old_link("Cells", "[T44C^7   |D-7 G7 |E-7,A7,D-7 |C6,p,p,Db7,Z"))
    assert bars_text(chart) == ["C^7", "D-7 G7", "E-7:1 A7:1 D-7:2", "C6:3 Db7:1"]


def test_repeat_with_first_and_second_endings():
    chart = chart_of(old_link("Endings", "{*AC   |A-   |N1D-7   |G7   }|N2D-7 G7 |C   Z"))
    assert bars_text(chart) == ["C", "A-", "D-7", "G7", "C", "A-", "D-7 G7", "C"]
    assert chart.form == ("A", "A2")


def test_third_ending_and_repeat_count():
    music = "{C   |N1D   }|N2E   }|N3F   Z"
    chart = chart_of(old_link("Three", music))
    assert bars_text(chart) == ["C", "D", "C", "E", "C", "F"]
    chart = chart_of(old_link("Count", "{C   |D  <3x> }E   Z"))
    assert bars_text(chart) == ["C", "D", "C", "D", "C", "D", "E"]


def test_bar_repeats_x_and_r_and_no_chord():
    chart = chart_of(old_link("Repeats", "[C   |F   | x  |   r|    |n   |G7   Z"))
    assert bars_text(chart) == ["C", "F", "F", "F", "F", "NC", "G7"]
    chart = chart_of(old_link("Kcl", "[C^7   |D-7   |   r|    |G7   Z"))
    assert bars_text(chart) == ["C^7", "D-7", "C^7", "D-7", "G7"]


def test_bass_only_chords_and_alternates():
    chart = chart_of(old_link("Bass", "[C   |C sW/B,W/A,|lF^7 (Gb7)   Z"))
    assert bars_text(chart) == ["C", "C:2 C/B:1 C/A:1", "F^7"]
    assert chart.bars[2].chords[0].alternate.symbol == "Gb7"


def test_empty_bar_holds_the_chord_before_it():
    chart = chart_of(old_link("Empty", "[C7   |    |F7   Z"))
    assert bars_text(chart) == ["C7", "C7", "F7"]
    assert chart.bars[1].empty and not chart.bars[0].empty


def test_meter_changes_keep_their_bars():
    chart = chart_of(old_link("Meter", "[T44C   |T24F G |T44C   Z"))
    assert chart.time == (4, 4)
    assert [bar.time for bar in chart.bars] == [None, (2, 4), None]
    assert [s.beats for s in chart.bars[1].chords] == [1.0, 1.0]
    assert any("meter changes" in w for w in chart.warnings)


def test_ds_al_coda():
    music = ("[*AC   |D   ][*BSE   |F  Q ][*CG   |<D.S. al Coda>A   ]"
             "[QB   |C   Z")
    chart = chart_of(old_link("Coda", music))
    assert bars_text(chart) == ["C", "D", "E", "F", "G", "A", "E", "F", "B", "C"]
    assert chart.form == ("A", "B", "C", "B", "Coda")


def test_dc_al_fine():
    chart = chart_of(old_link("Fine", "[*AC   |D  <Fine> ][*BE   |<D.C. al Fine>F   Z"))
    assert bars_text(chart) == ["C", "D", "E", "F", "C", "D"]


def test_key_style_and_tempo():
    link = new_link("Heads", "[C   Z", style="Up Tempo Swing", key="Eb-", tempo=240)
    (_, sheet), = read_link_text(link)
    text = to_yaml(sheet)
    chart = parse_chart(text, "x")
    assert chart.key == "Ebm" and chart.style == "bebop" and chart.tempo == 240
    assert "Up Tempo Swing" in text
    assert style_adapter("Bossa Nova") == "cool" and style_adapter("Pop-Rock") is None
    assert style_adapter("Medium Swing") == "swing" and style_adapter("Hard Bop") == "hardbop"


def test_a_form_that_cannot_be_followed_is_played_as_written():
    # 64 times 81 bars is past the limit of an unrolled form
    music = "{" + "C   |" * 80 + "D  <64x> }Z"
    (_, sheet), = read_link_text(old_link("Long", music))
    assert len(sheet.bars) == 81
    text = to_yaml(sheet)
    assert "# the form does not end" in text and "as written, once" in text
    # an ending that no pass reaches, with nothing else: the bars as written
    (_, sheet), = read_link_text(old_link("Skip", "{N2C   |D   }Z"))
    assert [b.chords[0].symbol for b in sheet.bars] == ["C", "D"]


def test_find_links_in_html_keeps_apostrophes():
    html = ('<html><body><a href="irealbook://Moanin\'=A=Swing=F=n=[C   Z">x</a>'
            '<a href="http://example.com">y</a></body></html>')
    assert find_links(html) == ["irealbook://Moanin'=A=Swing=F=n=[C   Z"]
    assert find_links("a irealb://abc b\nirealbook://x=y") == ["irealb://abc",
                                                                "irealbook://x=y"]


def test_custom_chord_text_is_read_when_it_is_a_quality():
    chart = chart_of(old_link("Custom", "[A*m7*   |E*sus4*   |C*hits*   Z"))
    assert bars_text(chart) == ["Am7", "Esus4", "C"]


def test_a_link_without_a_song_is_one_error():
    with pytest.raises(UserError, match="no song"):
        parse_link("irealb://nothing-here")


# --------------------------------------------------------------------------- real tunes

def _tune(name: str, title: str):
    path = ireal_dir() / name
    return load_chart(str(path), title)


def test_hand_checked_cold_cold_heart():
    chart = _tune("country.txt", "Cold Cold Heart")
    a = ["D", "D", "D", "A7", "A7", "A7", "A7", "D"]
    b_first = ["D", "D", "D7", "G", "G", "A7", "A7", "A7"]
    assert bars_text(chart) == (a + b_first + ["D", "D"] + a + b_first
                                + ["D:2 G:1 G#:1", "A7", "A7", "A7", "D", "D"]
                                + a + b_first + ["D"])
    assert chart.tempo == 93 and chart.key == "D"
    assert chart.form[-1] == "Coda"


def test_hand_checked_blue_moon_of_kentucky():
    chart = _tune("country.txt", "Blue Moon of Kentucky")
    intro = ["C", "C7", "F7", "F7", "C", "G7", "C", "C"]
    a = ["C", "C7", "F7", "F7"]
    assert bars_text(chart) == (intro + a + ["C", "C", "G7", "G7"] + a
                                + ["C", "G7", "C", "C7"]
                                + ["F", "F7", "C", "C7", "F", "F7", "C", "G7"]
                                + a + ["C", "G7", "C", "C"])


def test_hand_checked_friends_in_low_places():
    chart = _tune("country.txt", "Friends In Low Places")
    intro = ["A", "Bbo", "B-7", "E7"]
    a = ["A", "Bbo", "B-7", "B-7", "E7", "E7", "A", "A",
         "A", "Bbo", "B-7", "D-6", "E7", "E7", "E7", "E7"]
    b1 = ["A", "A", "A", "A", "B-7", "B-7", "E7", "E7"]
    b2 = ["A", "A", "A", "A", "B-7", "E7", "A", "A"]
    c = ["A", "A", "A", "A", "B-7", "E7", "A", "A"]
    coda = b1 + b2
    assert bars_text(chart) == intro + a + b1 + b2 + c + a + b2 + coda
    assert len(chart.bars) == 84


def test_hand_checked_dont_come_home_drinkin():
    chart = _tune("country.txt", "Don't Come Home Drinkin'")
    intro = ["D", "D", "A7", "D", "D"]
    a = ["D", "D", "A7", "D", "D", "D", "E7", "A7", "D", "D", "A7", "D D7", "G", "D",
         "A7", "D", "D7"]
    b = ["G", "G", "G", "D", "G", "G", "D", "A7"]
    c = ["D", "D", "A7", "D D7", "G", "D", "A7", "D"]
    d = ["D", "D", "A7", "D D7", "G", "D", "A7", "D", "D"]
    coda = ["D", "G", "D", "A7", "D"]
    assert bars_text(chart) == intro + a + b + c + d + a + b + c + coda


def test_hand_checked_i_fall_to_pieces():
    chart = _tune("country.txt", "I Fall To Pieces")
    intro = ["Eb", "F", "Bb", "Bb Bb/F Bb/G Bb/A"]
    a = ["Bb", "Eb", "F", "F:2 F:1 E:1", "Eb", "F", "Bb", "Bb"]
    b = ["Bb", "Bb", "Eb", "Eb", "F", "F", "Bb", "Bb Bb7", "Eb", "F", "Bb", "Bb Bb7",
         "Eb", "F", "Bb", "Bb"]
    coda = ["Eb", "F", "Bb", "Bb"]
    assert bars_text(chart) == intro + a + a + b + intro + a + b + coda


def test_hand_checked_crazy():
    chart = _tune("country.txt", "Crazy")
    intro = ["Bb", "Eb", "Eb D-7", "C-7 F13"]
    a = ["Bb:3 Ab7:1", "G7", "C-", "C-7", "F7", "F7"]
    b = ["Eb", "Eb Eo7", "Bb", "Bb A Bb B", "C", "C", "F7", "F7"]
    c = ["Bb:3 Ab7:1", "G7", "C-", "C-", "Eb D-7", "C-7 G7", "C- F7", "Bb F7"]
    assert bars_text(chart) == (intro + a + ["Bb Bo7", "C-7 F7"] + a
                                + ["Bb C-7", "C#o7 Bb7/D"] + b + c)


def test_hand_checked_volare_old_link_form():
    chart = _tune("irealbook.txt", "Volare")
    head = ["C", "C#o7", "D-7", "D-7 G7", "D-7", "G7", "C G7", "C",
            "C/E", "Ebo7", "D-7", "D-7", "D7", "A-7 D7", "G7", "G7 A7b9",
            "D-7", "D-7 A7b9", "D-7", "D-7 G7", "C C^7", "C6 G7", "A-7", "A-7",
            "D-7 G7", "C A-7", "D-7 G7", "C G7", "A- A-^7", "A-7 A-6", "E-7 B7#5", "E-7",
            "E7 F6", "E7", "A-7", "F/A A-7", "F- C7#5", "F-7 Bb7", "Eb", "G A7b9",
            "D-7", "D-7 A7b9", "D-7", "D-7 G7", "C C^7", "C6 G7", "C", "C G7"]
    assert bars_text(chart) == head + head          # D.C.: from the top once more
    assert chart.style == "swing"


def test_hand_checked_html_exports():
    chart = _tune("playlist.html", "Moanin'")
    a = ["NC Bb", "F:1 NC:3"] * 4
    b = ["Bb-7 Ab9", "G7b9 C7#9", "F-7", "F7b9 B7", "Bb-7 Ab9", "G7b9", "Gh7", "C7b9"]
    assert bars_text(chart) == a + a + b + a         # D.C. al Fine: ends at Fine
    chart = _tune("playlist.html", "Girl From Ipanema")
    head = ["F^7", "F^7", "G7#11", "G7#11", "G-7", "Gb7#11"]
    bridge = ["F#^7", "F#^7", "B7", "B7", "F#-7", "F#-7", "D7", "D7", "G-7", "G-7", "Eb7",
              "Eb7", "A-7", "D7b9b5", "G-7", "C7b9b5"]
    assert bars_text(chart) == (head + ["F^7", "Gb7"] + head + ["F^7", "F^7"] + bridge
                                + head + ["F^7", "Gb7"])
    assert chart.form == ("A", "A2", "B", "A")
    chart = _tune("playlist.html", "All Blues")
    assert chart.time == (3, 4)
    assert bars_text(chart) == (["G7"] * 8 + ["C7/G"] * 4 + ["G7"] * 4
                                + ["D7#9", "D7#9", "Eb7#9", "D7#9"] + ["G7"] * 4)
    chart = _tune("playlist.html", "Song For My Father")
    a = ["F-7", "F-7", "Eb7", "Eb7", "Db7", "C7sus", "F-7", "F-7"]
    assert bars_text(chart) == a + a + ["Eb7", "Eb7", "F-7", "F-7", "Eb7 Db7", "C7", "F-7",
                                        "F-7"]


def test_hand_checked_bolivia_link_and_musicxml_agree():
    link = _tune("playlist.html", "Bolivia")
    xml = load_chart(str(ireal_dir() / "bolivia.musicxml"))
    assert len(link.bars) == len(xml.bars) == 48
    intro = ["G7"] * 8
    assert bars_text(link)[:16] == intro + intro
    assert bars_text(link)[16:32] == ["Eb^7", "A13", "D^7", "Ab13b9", "G^7", "F#7b13", "B-7",
                                      "C^7#11", "B-7", "B-7/A", "G#h7", "G-7 C7", "F^7",
                                      "B7b9", "Bb^7", "A7#9"]
    for a, b in zip(link.bars, xml.bars, strict=True):
        assert [s.chord.tones for s in a.chords] == [s.chord.tones for s in b.chords]
        assert [s.beats for s in a.chords] == [s.beats for s in b.chords]
    assert link.bars[16].chords[0].alternate.symbol == "Bb7sus"


@pytest.mark.slow                       # 3-6 s a playlist: not in `make test-fast`
@pytest.mark.parametrize("name", ["pop400.txt", "country.txt", "irealbook.txt",
                                  "playlist.html", "brendan.html", "strange.html"])
def test_real_playlists_import_and_pass_check(name):
    tunes = read_tunes(str(ireal_dir() / name))
    good = 0
    for tune in tunes:
        try:
            chart = tune.chart(name)
        except UserError:
            continue
        assert chart.bars
        good += 1
    assert good >= 0.995 * len(tunes), f"{good} of {len(tunes)}"
    if name == "pop400.txt":
        assert len(tunes) > 390


def test_sheet_of_every_country_tune_round_trips_through_yaml():
    # what `import` writes reads back to the same bars the importer unrolled
    for title, sheet in read_link_text((ireal_dir() / "country.txt").read_text()):
        chart = parse_chart(to_yaml(sheet), title)
        assert len(chart.bars) == len(sheet.bars), title
        for bar, written in zip(chart.bars, sheet.bars, strict=True):
            if written.chords:
                assert [s.chord.symbol for s in bar.chords] == [c.symbol for c in
                                                                 written.chords], title


def test_song_to_sheet_names_sections_from_marks():
    song, = parse_link(old_link("Marks", "[*iC   ][*AD   ][*vE   ]F   Z"))
    sheet = song_to_sheet(song)
    assert [b.section for b in sheet.bars] == ["Intro", "A", "Verse", "Verse"]


TOKENS = ["C", "F7", "Bb-7", "G7b9", "Eb^7", "A7alt", "W/E", " ", " ", ",", "|", "|", "[", "]",
          "{", "}", "Z", "*A", "*B", "*i", "T44", "T34", "T24", "T68", "N1", "N2", "N3", "x",
          "r", "n", "p", "s", "l", "f", "Y", "S", "Q", "U", "(Db7)", "<D.C. al Coda>",
          "<D.S. al Fine>", "<Fine>", "<3x>", "XyQ", "Kcl", "LZ", "C*m7*", "<", ")", "*"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=60))
def test_any_music_string_imports_or_is_one_user_error(tokens):
    music = "".join(tokens)
    for link in (old_link("Fuzz", music), new_link("Fuzz", music)):
        for title, got in read_link_text(link):
            if isinstance(got, UserError):
                assert "\n" not in str(got)
                continue
            try:
                chart = parse_chart(to_yaml(got), title)
            except UserError as exc:
                raise AssertionError(f"{music!r}: the written chart does not read: {exc}") from exc
            assert len(chart.bars) == len(got.bars)
