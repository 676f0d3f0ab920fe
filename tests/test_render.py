"""`melodyflow render` through the CLI, with a tiny model built in the test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from melodyflowd.cli import tools_main

CHART = """title: Render blues
tempo: 140
time: 4/4
chords: "| C7 | F7 | C7 | C7 | F7 | F7 | C7 | A7 | Dm7 | G7 | C7 G7:2 |"
"""
SYMBOLS = ["C7", "F7", "C7", "C7", "F7", "F7", "C7", "A7", "Dm7", "G7", "C7", "G7"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict:
    from tiny_model import build_tiny_model

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


def _render_json(setup: dict, tmp_path: Path) -> Path:
    out = tmp_path / "same.json"
    assert render(setup, out).exit_code == 0
    return out


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


def test_piano_roll_of_a_hand_built_bank(tmp_path):
    from melodyflowd.phrases import BankBar, BankChord, BarPhrase, PhraseBank, PhraseNote
    from melodyflowd.render import piano_roll

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
