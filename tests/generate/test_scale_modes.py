"""Every scale mode the config and the CLI accept composes a bank on the tiny model:
one list of names (music/scale_modes.py), no name that only fails in the generator."""

from __future__ import annotations

import pytest

from melodyflowd import cli
from melodyflowd.generate.compose import compose_bank
from melodyflowd.generate.model import load_model
from melodyflowd.music import theory
from melodyflowd.music.scale_modes import PER_CHORD_MODES, SCALE_MODES
from melodyflowd.service.config import load_settings
from melodyflowd.settings import CHOICES
from tests.support.tiny_model import build_tiny_model, hand_chart


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_model(str(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny")))


def _cli_scale_choices(command) -> tuple[str, ...]:
    (option,) = [p for p in command.params if p.name == "scale"]
    return tuple(option.type.choices)


def test_config_cli_and_theory_take_their_names_from_one_list():
    assert CHOICES["generation.scale"] == SCALE_MODES
    assert _cli_scale_choices(cli.render) == SCALE_MODES
    assert _cli_scale_choices(cli.apply) == SCALE_MODES
    assert theory.MODES == PER_CHORD_MODES and set(PER_CHORD_MODES) < set(SCALE_MODES)


@pytest.mark.parametrize("constraint", ["soft", "hard"])
@pytest.mark.parametrize("mode", CHOICES["generation.scale"])
def test_every_mode_the_config_accepts_composes(loaded, mode, constraint):
    settings = load_settings(None, {"generation.scale": mode,
                                    "generation.constraint": constraint,
                                    "generation.variations": 1,
                                    "generation.seed": 3}).generation
    chart = hand_chart(2)
    bank = compose_bank(chart, loaded, settings)
    assert bank.n_variations == 1 and len(bank.bars) == 2
    assert all(phrase.notes for phrase in bank.variations[0])
