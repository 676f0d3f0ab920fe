"""`melodyflow import`, `check` on a playlist, and --tune through render and the daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.parse
from pathlib import Path

import yaml
from click.testing import CliRunner

from melodyflowd.cli import tools_main
from melodyflowd.music.chart import load_chart
from tests.support.ireal_data import ireal_dir

ROOT = Path(__file__).resolve().parents[2]


def song(title: str, music: str) -> str:
    return f"{title}=Composer=Medium Swing=C=n={music}"


def playlist(tmp_path: Path, *songs: str) -> Path:
    path = tmp_path / "playlist.txt"
    path.write_text("irealbook://" + urllib.parse.quote("===".join(songs)) + "\n")
    return path


GOOD = song("Blues In C", "[*AT44C7   |F7   |C7   |C7   |F7   |F7   |C7   |A7   |"
                          "D-7   |G7   |C7 A7 |D-7 G7 Z")
OTHER = song("The Other One", "{*AC^7   |A-7   |N1D-7   |G7   }|N2D-7 G7 |C^7   Z")
BROKEN = song("Broken", "[C   |C-o7   |F   Z")         # a quality the chord reader refuses


def test_import_writes_one_readable_chart_a_tune(tmp_path):
    source = playlist(tmp_path, GOOD, OTHER)
    out = tmp_path / "charts"
    out.mkdir()
    result = CliRunner().invoke(tools_main, ["import", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["blues-in-c.yaml", "the-other-one.yaml"]
    assert "2 tunes: 2 ok, 0 failed" in result.output
    text = (out / "the-other-one.yaml").read_text()
    data = yaml.safe_load(text)
    assert data["form"] == ["A", "A2"] and data["title"] == "The Other One"
    assert text.count("\n    | ") == 8                     # one line a bar
    chart = load_chart(str(out / "blues-in-c.yaml"))
    assert len(chart.bars) == 12 and chart.style == "swing"
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out / "blues-in-c.yaml").st_mode & 0o777 == 0o666 & ~umask


def test_import_one_tune_and_a_bad_folder(tmp_path):
    source = playlist(tmp_path, GOOD, OTHER)
    result = CliRunner().invoke(tools_main, ["import", str(source), "--tune", "other",
                                             "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "the-other-one.yaml").exists()
    assert not (tmp_path / "blues-in-c.yaml").exists()
    result = CliRunner().invoke(tools_main, ["import", str(source), "--out",
                                             str(tmp_path / "missing")])
    assert result.exit_code == 2 and "no such folder" in result.output


def test_check_a_playlist_one_line_a_tune_and_exit_1_on_a_failure(tmp_path):
    source = playlist(tmp_path, GOOD, BROKEN, OTHER)
    result = CliRunner().invoke(tools_main, ["check", str(source)])
    assert result.exit_code == 1
    lines = result.output.strip().split("\n")
    assert lines[0].startswith("ok   Blues In C: 12 bars")
    assert lines[1].startswith("FAIL Broken: ") and "C-o7" in lines[1]
    assert lines[2].startswith("ok   The Other One: 8 bars")
    assert lines[3] == "3 tunes: 2 ok, 1 failed (66.7 % ok)"
    result = CliRunner().invoke(tools_main, ["check", str(playlist(tmp_path, GOOD, OTHER))])
    assert result.exit_code == 0 and "2 tunes: 2 ok" in result.output


def test_check_one_tune_of_a_playlist_and_a_link(tmp_path):
    source = playlist(tmp_path, GOOD, OTHER)
    result = CliRunner().invoke(tools_main, ["check", str(source), "--tune", "blues in c"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Blues In C: 120 bpm, 4/4, key C, style swing, 12 bars")
    link = source.read_text().strip()
    result = CliRunner().invoke(tools_main, ["check", link, "--tune", "The Other One"])
    assert result.exit_code == 0 and "8 bars" in result.output.split("\n")[0]
    result = CliRunner().invoke(tools_main, ["check", str(source), "--tune", "nothing"])
    assert result.exit_code == 2
    assert "no tune titled 'nothing'" in result.output and "Blues In C" in result.output


def test_check_warns_with_file_and_line(tmp_path):
    chart = tmp_path / "warn.yaml"
    chart.write_text('title: W\nchords: "| C7, | F |"\n')
    result = CliRunner().invoke(tools_main, ["check", str(chart)])
    assert result.exit_code == 0
    assert f"check: warning: {chart}:2:12: 'C7,' ends in stray punctuation" in result.output


def test_daemon_lists_the_tunes_of_a_playlist_given_without_tune(tmp_path):
    source = playlist(tmp_path, GOOD, OTHER)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", "from melodyflowd.cli import daemon_main; "
                           "daemon_main()", "--chart", str(source), "--backend", "jack"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    assert "2 tunes here: pick one with --tune TITLE (Blues In C, The Other One)" in proc.stderr


def test_real_playlist_checks_clean():
    result = CliRunner().invoke(tools_main, ["check", str(ireal_dir() / "country.txt")])
    assert result.exit_code == 0, result.output[-500:]
    assert result.output.strip().split("\n")[-1].endswith("(100.0 % ok)")
