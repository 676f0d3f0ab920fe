"""`melodyflow render` through the CLI, with a tiny model built in the test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mido
import pytest
from click.testing import CliRunner

from melodyflowd.cli import tools_main
from melodyflowd.music.phrases import load_bank

CHART = """title: Render blues
tempo: 140
time: 4/4
chords: "| C7 | F7 | C7 | C7 | F7 | F7 | C7 | A7 | Dm7 | G7 | C7 G7:2 |"
"""
SYMBOLS = ["C7", "F7", "C7", "C7", "F7", "F7", "C7", "A7", "Dm7", "G7", "C7", "G7"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from tests.support.tiny_model import build_tiny_model

    root = tmp_path_factory.mktemp("render")
    model = build_tiny_model(root / "tiny")
    chart = root / "blues.yaml"
    chart.write_text(CHART)
    config = root / "config.yaml"
    config.write_text(f"generation:\n  cache_dir: {root / 'cache'}\n")
    return {"model": model, "chart": chart, "config": config, "root": root}


def render(setup: dict, out: Path, *extra: str):
    args = ["render", "--chart", str(setup["chart"]), "--out", str(out), "--config",
            str(setup["config"]), "--model", str(setup["model"]), "--variations", "3",
            "--seed", "4", *extra]
    return CliRunner().invoke(tools_main, args, catch_exceptions=False)


def test_render_json_is_a_bank(setup, tmp_path):
    out = tmp_path / "bank.json"
    result = render(setup, out)
    assert result.exit_code == 0, result.output
    assert f"wrote {out}" in result.stdout
    assert "loading model" in result.stderr and "generating" in result.stderr
    bank = load_bank(str(out))
    assert bank.n_variations == 3 and bank.seed == 4 and bank.title == "Render blues"
    assert len(bank.bars) == 11
    assert [c.symbol for bar in bank.bars for c in bar.chords] == SYMBOLS
    assert all(phrase.notes for var in bank.variations for phrase in var)
    assert [name for name in os.listdir(tmp_path)] == ["bank.json"]   # no temp file left


def test_render_midi_plays_the_variations_one_after_another(setup, tmp_path):
    out = tmp_path / "bank.mid"
    result = render(setup, out)
    assert result.exit_code == 0, result.output
    midi = mido.MidiFile(str(out))
    assert len(midi.tracks) == 2
    markers = [m.text for m in midi.tracks[0] if m.type == "marker"]
    assert [m for m in markers if m.startswith("variation")] == [
        "variation 1", "variation 2", "variation 3"]
    assert markers.count("Dm7") == 3
    # Played back, the notes take three times the form (11 bars of 4 beats), not one.
    form_ticks = 11 * 4 * midi.ticks_per_beat
    now, onsets = 0, []
    for message in midi.tracks[1]:
        now += message.time
        if message.type == "note_on" and message.velocity:
            onsets.append(now)
    assert min(onsets) < form_ticks and 2 * form_ticks <= max(onsets) < 3 * form_ticks
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_render_midi_tracks_has_a_track_a_variation_with_markers(setup, tmp_path):
    out = tmp_path / "bank.mid"
    result = render(setup, out, "--tracks")
    assert result.exit_code == 0, result.output
    midi = mido.MidiFile(str(out))
    with_notes = [t for t in midi.tracks if any(m.type == "note_on" for m in t)]
    assert len(with_notes) == 3
    markers = [m.text for t in midi.tracks for m in t if m.type == "marker"]
    assert "C7" in markers and "Dm7" in markers and "A7" in markers
    bank = load_bank(str(_render_json(setup, tmp_path)))
    for track, variation in zip(with_notes, bank.variations, strict=True):
        played = {m.note for m in track if m.type == "note_on" and m.velocity > 0}
        assert played == {n.pitch for phrase in variation for n in phrase.notes}


def _render_json(setup: dict, tmp_path: Path) -> Path:
    out = tmp_path / "same.json"
    assert render(setup, out).exit_code == 0
    return out


def test_render_png_is_a_piano_roll(setup, tmp_path):
    out = tmp_path / "roll.png"
    result = render(setup, out)
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 20_000
    import matplotlib.image

    image = matplotlib.image.imread(str(out))
    height, width = image.shape[:2]
    # 11 bars: two lines (8 + 3 bars), each a chord lane and three rows
    assert 800 < width < 1400 and height > 2 * 3 * 100
    assert oct(os.stat(out).st_mode & 0o777) == oct(0o666 & ~_umask())


def test_unknown_extension_is_a_user_error(setup, tmp_path):
    out = tmp_path / "bank.txt"
    result = render(setup, out)
    assert result.exit_code == 2
    assert "bank.txt" in result.stderr and "'.txt'" in result.stderr
    assert ".json" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_png_without_matplotlib_is_one_line(setup, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    out = tmp_path / "roll.png"
    result = render(setup, out)
    assert result.exit_code == 2
    assert "melodyflowd[plot]" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_a_bad_chart_is_one_line_and_leaves_the_old_file(setup, tmp_path):
    chart = tmp_path / "bad.yaml"
    chart.write_text('tempo: 120\nchords: "| C7 | Hm7 |"\n')
    out = tmp_path / "bank.json"
    out.write_text("previous content")
    args = ["render", "--chart", str(chart), "--out", str(out), "--config",
            str(setup["config"]), "--model", str(setup["model"]), "--seed", "1"]
    result = CliRunner().invoke(tools_main, args, catch_exceptions=False)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert "bad.yaml:2" in last and "Hm7" in last
    assert out.read_text() == "previous content"
    assert sorted(os.listdir(tmp_path)) == ["bad.yaml", "bank.json"]


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_an_interrupted_write_leaves_no_half_file(tmp_path, interrupt):
    from melodyflowd.errors import UserError
    from melodyflowd.offline.render import _atomic

    out = tmp_path / "roll.png"
    out.write_bytes(b"old")
    expected = UserError if interrupt is OSError else KeyboardInterrupt
    with pytest.raises(expected), _atomic(out) as handle:
        handle.write(b"half of a new file")
        raise interrupt(28, "No space left on device")
    assert out.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["roll.png"]


def test_render_in_a_real_process(setup, tmp_path):
    out = tmp_path / "sub.mid"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    # The model runs in the generator child: the parent never imports torch/transformers.
    script = ("import atexit, sys\n"
              "atexit.register(lambda: print('parent imported:', *[m for m in "
              "('torch', 'transformers') if m in sys.modules], file=sys.stderr))\n"
              "from melodyflowd.cli import tools_main\n"
              "tools_main()\n")
    proc = subprocess.run(
        [sys.executable, "-c", script, "render", "--chart", str(setup["chart"]),
         "--out", str(out), "--config", str(setup["config"]), "--model", str(setup["model"]),
         "--variations", "2", "--tracks",
         "--scale", "pentatonic", "--temperature", "1.2"],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "generating" in proc.stderr and f"wrote {out}" in proc.stdout
    assert "seed " in proc.stderr                     # an unseeded render names its seed
    assert proc.stderr.splitlines()[-1].rstrip() == "parent imported:"
    midi = mido.MidiFile(str(out))
    assert len([t for t in midi.tracks if any(m.type == "note_on" for m in t)]) == 2


def test_piano_roll_of_a_hand_built_bank(tmp_path):
    from melodyflowd.music.phrases import BankBar, BankChord, BarPhrase, PhraseBank, PhraseNote
    from melodyflowd.offline.render import piano_roll

    bars = tuple(BankBar(i, (BankChord(s, 0.0, 2.0), BankChord("G7", 2.0, 2.0)))
                 for i, s in enumerate(["C7", "F7", "Dm7"]))
    variations = tuple(
        tuple(BarPhrase(b.index, tuple(PhraseNote(60 + v + k, 200, 250, 40 + 20 * k, k * 1.0,
                                                  "C7") for k in range(4))) for b in bars)
        for v in range(2))
    bank = PhraseBank("Hand", 120.0, (4, 4), bars, variations, seed=3)
    out = tmp_path / "hand.png"
    with open(out, "wb") as handle:
        piano_roll(bank, handle)
    import matplotlib.image

    image = matplotlib.image.imread(str(out))
    assert image.shape[0] > 200 and image.shape[1] > 600
    # some pixels are the note colour (blue dominant), so notes were drawn
    blue = (image[..., 2] > 0.5) & (image[..., 0] < 0.4)
    assert blue.sum() > 100


def test_a_model_that_cannot_load_is_reported_once(setup, tmp_path):
    out = tmp_path / "bank.json"
    missing = tmp_path / "missing-model"
    args = ["render", "--chart", str(setup["chart"]), "--out", str(out), "--config",
            str(setup["config"]), "--model", str(missing), "--seed", "1"]
    result = CliRunner().invoke(tools_main, args, catch_exceptions=False)
    assert result.exit_code == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("render: error:") and str(missing) in last
    assert result.stderr.count("model directory not found") == 1, result.stderr
    assert not out.exists() and os.listdir(tmp_path) == []


def test_a_long_chart_wraps_and_the_title_names_the_style(tmp_path):
    from melodyflowd.music.phrases import BankBar, BankChord, BarPhrase, PhraseBank, PhraseNote
    from melodyflowd.offline.render import piano_roll, roll_title

    adapter = tmp_path / "models" / "adapters" / "bebop"
    adapter.mkdir(parents=True)
    bars = tuple(BankBar(i, (BankChord("C7", 0.0, 4.0),)) for i in range(32))
    variations = tuple(tuple(BarPhrase(i, (PhraseNote(60 + v, 200, 250, 90, 0.0, "C7"),))
                             for i in range(32)) for v in range(4))
    bank = PhraseBank("Long", 160.0, (4, 4), bars, variations, model="default",
                      adapter=str(adapter), seed=7)
    assert roll_title(bank) == "Long - default + bebop, seed 7"
    out = tmp_path / "long.png"
    with open(out, "wb") as handle:
        piano_roll(bank, handle)
    import matplotlib.image

    height, width = matplotlib.image.imread(str(out)).shape[:2]
    assert width <= 1300 and height > width          # four lines of 8 bars, not one strip
