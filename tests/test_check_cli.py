"""`melodyflow check song.yaml [--json]` through click and through a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from melodyflowd.cli import tools_main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BAD_CHART = 'title: Broken\ntempo: 120\nchords: "| Dm7 G7 | Cmaj7 | Hm7 |"\n'


def test_check_prints_one_line_a_bar():
    result = CliRunner().invoke(tools_main, ["check", str(EXAMPLES / "blues.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.output.rstrip("\n").split("\n")
    assert len(lines) == 1 + 12
    assert lines[0].startswith("Jazz Blues in F")
    assert "F7 (4): F A C Eb | mixolydian F G A Bb C D Eb" in lines[1]
    assert "D7b9 (2): D F# A C Eb | half-whole diminished" in lines[7]


def test_check_json_shape():
    result = CliRunner().invoke(tools_main, ["check", "--json",
                                             str(EXAMPLES / "rhythm-changes.yaml")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert set(data) == {"title", "tempo", "time", "key", "style", "bars"}
    assert data["time"] == [4, 4] and data["key"] == "Bb" and data["tempo"] == 220
    assert len(data["bars"]) == 32
    assert [b["index"] for b in data["bars"]] == list(range(32))
    assert [b["section"] for b in data["bars"][:17:8]] == ["A1", "A2", "B"]
    first = data["bars"][0]["chords"][0]
    assert set(first) == {"symbol", "start_beat", "beats", "root", "bass", "tones", "scale",
                          "pentatonic"}
    assert first == {"symbol": "Bb6", "start_beat": 0, "beats": 2, "root": 10, "bass": 10,
                     "tones": [10, 2, 5, 7], "scale": [10, 0, 2, 3, 5, 7, 9],
                     "pentatonic": [10, 0, 2, 5, 7]}
    # "%" repeats: bars 17-18 of the form are the bridge's D7 twice
    assert [c["symbol"] for c in data["bars"][17]["chords"]] == ["D7"]


def test_check_every_example():
    for path in sorted(EXAMPLES.glob("*.yaml")):
        result = CliRunner().invoke(tools_main, ["check", str(path)])
        assert result.exit_code == 0, (path, result.output)


def test_check_bad_chart_exits_2_with_one_line(tmp_path):
    song = tmp_path / "song.yaml"
    song.write_text(BAD_CHART)
    result = CliRunner().invoke(tools_main, ["check", str(song)])
    assert result.exit_code == 2
    assert result.stdout == ""
    lines = result.stderr.strip().split("\n")
    assert len(lines) == 1
    assert f"{song}:3:29:" in lines[0]
    assert "'Hm7'" in lines[0] and "accepted:" in lines[0]
    assert "Traceback" not in result.output


def test_check_missing_file_exits_2(tmp_path):
    result = CliRunner().invoke(tools_main, ["check", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "no such chart file" in result.stderr


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from melodyflowd.cli import tools_main; tools_main()", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT, check=False)


def test_check_in_a_real_process(tmp_path):
    good = _run("check", "--json", str(EXAMPLES / "minor-aabc.yaml"))
    assert good.returncode == 0, good.stderr
    data = json.loads(good.stdout)
    assert len(data["bars"]) == 32 and data["key"] == "C minor"

    song = tmp_path / "song.yaml"
    song.write_text(BAD_CHART)
    bad = _run("check", str(song))
    assert bad.returncode == 2
    assert bad.stdout == ""
    lines = bad.stderr.strip().split("\n")
    assert len(lines) == 1, bad.stderr
    assert f"{song}:3:29:" in lines[0] and "'Hm7'" in lines[0]


def test_check_json_writes_fractions_as_the_phrase_bank_does(tmp_path):
    chart = tmp_path / "thirds.yaml"
    chart.write_text('title: Thirds\ntempo: 120\ntime: 2/4\nchords: "| C D E | F |"\n')
    result = CliRunner().invoke(tools_main, ["check", "--json", str(chart)])
    assert result.exit_code == 0, result.output
    chords = json.loads(result.stdout)["bars"][0]["chords"]     # a warning goes to stderr
    assert [(c["start_beat"], c["beats"]) for c in chords] == \
        [(0, 0.666667), (0.666667, 0.666667), (1.333333, 0.666667)]
