"""MusicXML import: a lead sheet we write here (every sign the importer reads), compressed
.mxl, and the fixture exported by iReal Pro."""

from __future__ import annotations

import io
import zipfile

import pytest

from melodyflowd.music.leadsheet import SourceError
from melodyflowd.music.musicxml import read_mxl, read_text
from melodyflowd.music.sources import load_chart, read_tunes
from tests.support.ireal_data import bars_text, ireal_dir

HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<score-partwise version="3.1">
  <work><work-title>Test Tune</work-title></work>
  <identification><creator type="composer">A. Writer</creator></identification>
  <part-list><score-part id="P1"><part-name>Lead</part-name></score-part></part-list>
  <part id="P1">
"""
TAIL = "  </part>\n</score-partwise>\n"


def harmony(step: str, kind: str, alter: int = 0, text: str | None = None,
            degrees: str = "", bass: str = "", offset: int | None = None) -> str:
    text_attr = f' text="{text}"' if text is not None else ""
    off = f"<offset>{offset}</offset>" if offset is not None else ""
    return (f"<harmony><root><root-step>{step}</root-step><root-alter>{alter}</root-alter>"
            f"</root><kind{text_attr}>{kind}</kind>{degrees}{bass}{off}</harmony>")


def note(duration: int) -> str:
    return (f"<note><pitch><step>C</step><octave>5</octave></pitch>"
            f"<duration>{duration}</duration></note>")


def measure(number: int, body: str, attributes: str = "") -> str:
    return f'<measure number="{number}">{attributes}{body}</measure>\n'


FIRST = ("<attributes><divisions>2</divisions><key><fifths>-1</fifths><mode>major</mode>"
         "</key><time><beats>4</beats><beat-type>4</beat-type></time></attributes>"
         '<direction><direction-type><rehearsal>A</rehearsal></direction-type>'
         '<sound tempo="132"/></direction>')

LEAD_SHEET = HEAD + "".join([
    # 1: repeat start; two chords, the second placed by the notes before it
    measure(1, '<barline location="left"><repeat direction="forward"/></barline>'
            + harmony("F", "major-seventh", text="maj7") + note(4)
            + harmony("D", "minor-seventh") + note(4), FIRST),
    # 2: degrees (7 b9) and a bass note; the second chord by <offset> (beat 3)
    measure(2, harmony("A", "dominant", degrees="<degree><degree-value>9</degree-value>"
                       "<degree-alter>-1</degree-alter><degree-type>add</degree-type>"
                       "</degree>", bass="<bass><bass-step>E</bass-step></bass>")
            + harmony("G", "minor-seventh", offset=6) + note(8)),
    # 3: first ending, repeat back
    measure(3, '<barline location="left"><ending number="1" type="start"/></barline>'
            + harmony("C", "dominant") + note(8)
            + '<barline location="right"><ending number="1" type="stop"/>'
              '<repeat direction="backward"/></barline>'),
    # 4: second ending
    measure(4, '<barline location="left"><ending number="2" type="start"/></barline>'
            + harmony("B", "dominant", alter=-1, text="7alt") + note(8)
            + '<barline location="right"><ending number="2" type="stop"/></barline>'),
    # 5: meter change, no chord: the Bb7alt holds; rehearsal B
    measure(5, '<direction><direction-type><rehearsal>B</rehearsal></direction-type>'
               '</direction>' + note(6),
            "<attributes><time><beats>3</beats><beat-type>4</beat-type></time></attributes>"),
    # 6: a kind only its text says, and the coda ("to coda" after it)
    measure(6, harmony("E", "other", alter=-1, text="-6") + note(6)
            + '<direction><direction-type><words>To Coda</words></direction-type>'
              '</direction>',
            "<attributes><time><beats>4</beats><beat-type>4</beat-type></time></attributes>"),
    # 7: D.C. al Coda
    measure(7, harmony("C", "suspended-fourth") + note(8)
            + '<direction><direction-type><words>D.C. al Coda</words></direction-type>'
              '</direction>'),
    # 8: the coda
    measure(8, '<direction><direction-type><coda/></direction-type></direction>'
            + harmony("F", "major-sixth") + note(8)),
]) + TAIL


def test_lead_sheet_signs():
    sheet = read_text(LEAD_SHEET, "test.musicxml")
    assert sheet.title == "Test Tune" and sheet.composer == "A. Writer"
    assert sheet.key == "F" and sheet.tempo == 132
    chart = load_chart_from_text(LEAD_SHEET)
    first = ["Fmaj7 Dm7", "A7b9/E:3 Gm7:1"]
    # |: 1 2 [1. 3 :| [2. 4 | 5 (3/4) | 6 (to coda) | 7 (D.C. al Coda) || coda 8
    assert bars_text(chart) == (first + ["C7"] + first + ["Bb7alt", "Bb7alt", "Eb-6",
                                                          "Csus4"]
                                + first + ["Bb7alt", "Bb7alt", "Eb-6", "F6"])
    assert chart.bars[6].time == (3, 4) and chart.bars[6].empty
    assert chart.bars[1].chords[0].chord.bass == 4
    assert chart.form[:3] == ("A", "A2", "B")


def load_chart_from_text(text: str):
    from melodyflowd.music.chart import parse_chart
    from melodyflowd.music.leadsheet import to_yaml

    return parse_chart(to_yaml(read_text(text, "test.musicxml")), "test.musicxml")


def test_mxl_reads_the_score_its_container_names(tmp_path):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("META-INF/container.xml",
                         '<container><rootfiles><rootfile full-path="score/lead.xml"/>'
                         '</rootfiles></container>')
        archive.writestr("score/lead.xml", LEAD_SHEET)
    sheet = read_mxl(buffer.getvalue(), "x.mxl")
    assert sheet.title == "Test Tune"
    path = tmp_path / "lead.mxl"
    path.write_bytes(buffer.getvalue())
    chart = load_chart(str(path))
    assert len(chart.bars) == 15


def test_errors_name_the_file():
    with pytest.raises(SourceError, match="no chord symbols"):
        read_text(HEAD + measure(1, note(8)) + TAIL, "plain.xml")
    with pytest.raises(SourceError, match="well-formed"):
        read_text("<score-partwise><part>", "bad.xml")
    with pytest.raises(SourceError, match="zip"):
        read_mxl(b"not a zip", "bad.mxl")
    with pytest.raises(SourceError, match="timewise"):
        read_text("<score-timewise/>", "t.xml")


def test_xml_file_is_found_by_its_content(tmp_path):
    path = tmp_path / "lead.xml"
    path.write_text(LEAD_SHEET)
    tune, = read_tunes(str(path))
    assert tune.title == "Test Tune"


def test_ireal_pro_musicxml_fixture():
    chart = load_chart(str(ireal_dir() / "bolivia.musicxml"))
    assert chart.title == "Bolivia" and chart.key == "D"
    assert chart.form == ("intro", "intro", "A", "B", "B")
    assert bars_text(chart)[16:20] == ["Ebmaj7", "A13", "Dmaj7", "Ab13b9"]


def test_utf16_file_with_its_declaration(tmp_path):
    path = tmp_path / "lead.musicxml"
    path.write_bytes(LEAD_SHEET.replace('encoding="UTF-8"', 'encoding="UTF-16"')
                     .encode("utf-16"))
    tune, = read_tunes(str(path))
    assert tune.title == "Test Tune" and tune.error is None
    with pytest.raises(SourceError, match="entity"):
        read_text('<!DOCTYPE x [<!ENTITY a "b">]><score-partwise/>', "e.xml")
