"""The daemon's follow-mode bookkeeping without ports: the follow lines come in two banks
(the first scales, then the rest), a chart's new key rebuilds the chord tables, and
regenerating asks for new follow lines after the chart's bank."""

from __future__ import annotations

import dataclasses

import pytest

from melodyflowd.live.engine import Engine
from melodyflowd.live.transport import Transport
from melodyflowd.music.follow import FIRST_SCALES, LATER_SCALES, follow_charts
from melodyflowd.music.recognize import RecognitionTable
from melodyflowd.service.config import load_settings
from melodyflowd.service.daemon import Daemon
from tests.support.follow_bank import make_follow_bank


@pytest.fixture
def daemon():
    """A daemon in follow mode over a chart in C, its first follow lines in."""
    settings = load_settings(None, {"engine.follow": True})
    d = Daemon(settings)
    d.follow_charts = follow_charts()
    first_bank, _ = make_follow_bank(2, FIRST_SCALES)
    song = dataclasses.replace(d.follow_charts[0], title="song", source="song.yaml", key="C")
    d.chart = song
    d.engine = Engine(settings.engine, song, first_bank, Transport(song.tempo, 4))
    d.follow_banks[0] = first_bank
    d._offer_follow()
    return d


def offered(d: Daemon):
    return d.engine._follower.offered


def test_the_other_scales_arrive_and_the_tables_have_their_own_lines(daemon):
    before = offered(daemon)
    later_bank, _ = make_follow_bank(2, LATER_SCALES)
    daemon._offer(later_bank, daemon.follow_charts[1], "generated")
    after = offered(daemon)
    assert after is not before
    own = {cl.scale_key: cl.lines for cl in after.lines}
    borrowed = {cl.scale_key: cl.lines for cl in before.lines}
    assert any(own[k] != borrowed[k] for k in own)
    assert daemon.chart.title == "song"               # the chart's bank did not change


def test_a_chart_in_a_new_key_rebuilds_the_chord_tables_in_that_key(daemon):
    assert offered(daemon).recognition.key == RecognitionTable("C").key
    bank, _ = make_follow_bank(2, FIRST_SCALES)
    new = dataclasses.replace(daemon.chart, key="Eb")
    daemon._offer(bank, new, "generated")
    assert daemon.chart is new
    assert offered(daemon).recognition.key == RecognitionTable("Eb").key


def test_regenerating_asks_for_new_follow_lines_after_the_charts_bank(daemon):
    queue = daemon._follow_queue(daemon.chart, "control CC", True)
    assert [c for c, _, _ in queue] == list(daemon.follow_charts)
    assert all(fresh for _, _, fresh in queue)
    # without a chart of the player's, the first follow chart is the chart: the rest after
    queue = daemon._follow_queue(daemon.follow_charts[0], "control CC", True)
    assert [c for c, _, _ in queue] == [daemon.follow_charts[1]]
    # SIGHUP: the lines as they are (the cache's), rebuilt for the key
    assert not any(f for _, _, f in daemon._follow_queue(daemon.chart, "SIGHUP", False))
