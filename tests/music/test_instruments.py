"""generation.instrument: registers where the WJazzD solos of each instrument sit."""

from __future__ import annotations

import pytest

from melodyflowd.errors import UserError
from melodyflowd.music.instruments import REGISTERS, pitch_range
from melodyflowd.service.config import load_settings


def test_registers_are_ranges_around_their_median():
    for name, reg in REGISTERS.items():
        assert 0 < reg.low < reg.median < reg.high < 128, name
        assert reg.high - reg.low >= 12, name                  # at least an octave
    assert REGISTERS["trumpet"].median > REGISTERS["tenor"].median > \
        REGISTERS["baritone"].median


def test_an_instrument_wins_over_low_and_high_none_keeps_them():
    tenor = REGISTERS["tenor"]
    assert pitch_range("tenor", 55, 84) == (tenor.low, tenor.high, tenor.median)
    assert pitch_range(None, 55, 84) == (55, 84, None)


def test_the_setting_is_checked(tmp_path):
    assert load_settings(None, {"generation.instrument": "alto"}).generation.instrument == "alto"
    bad = tmp_path / "c.yaml"
    bad.write_text("generation:\n  instrument: tenr\n")
    with pytest.raises(UserError, match="did you mean 'tenor'"):
        load_settings(str(bad))
