"""melodyflowd --follow end to end: the daemon on a private JACK server with the embedded
model writing its follow lines; a client plays left-hand voicings of a ii-V-I in three keys
below the split and a right-hand rhythm above it; the left hand comes out unchanged, and
every right-hand note comes out on the scale of the chord the left hand holds."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from melodyflowd.music.theory import parse_chord
from tests.support.jack import DaemonProcess, MidiPeer, note_balance, take, write_bank

# (chord the left hand plays, its voicing below middle C on channel 1): rooted ii,
# rootless V and I
PROGRESSIONS = [
    [("Dm7", [38, 50, 53, 57, 48]), ("G13", [53, 57, 59, 52]), ("Cmaj9", [52, 55, 59, 50])],
    [("Gm7", [43, 46, 50, 53]), ("C13", [46, 50, 52, 57]), ("Fmaj9", [45, 48, 52, 55])],
    [("Cm7", [36, 51, 55, 46]), ("F13", [51, 55, 57, 50]), ("Bbmaj9", [50, 53, 57, 48])],
]
RHYTHM = [0.0, 0.25, 0.375, 0.5, 0.75]       # seconds after the chord: a right-hand figure
RIGHT_KEYS = [72, 74, 76, 79, 77]


def follow_config(tmp_path: Path) -> Path:
    """The daemon's config: seed 3, a cache in tmp_path, scale chord-scale with the hard
    constraint, so that every note can be checked against the held chord's scale (the
    defaults, metrical and soft, let approach and passing tones through)."""
    config = tmp_path / "follow.yaml"
    config.write_text(f"generation:\n  cache_dir: {tmp_path / 'cache'}\n  seed: 3\n"
                      "  scale: chord-scale\n  constraint: hard\n")
    return config


@pytest.mark.jack
@pytest.mark.slow
def test_follow_plays_the_right_hand_on_the_left_hands_chords(jack_server, tmp_path: Path):
    daemon = DaemonProcess(jack_server, tmp_path,
                           ["--follow", "--config", str(follow_config(tmp_path))])
    with take(daemon, ready_timeout=180) as run:
        assert daemon.wait_log("following the chords played (keys below 60)", timeout=1)
        peer = run.peer
        takes: list[tuple[str, list[list[int]], list[list[int]]]] = []
        for progression in PROGRESSIONS:
            for symbol, voicing in progression:
                before = len(peer.messages())
                for note in voicing:
                    peer.send([0x90, note, 70])
                time.sleep(0.05)
                start = time.monotonic()
                for at, key in zip(RHYTHM, RIGHT_KEYS, strict=True):
                    time.sleep(max(0.0, start + at - time.monotonic()))
                    peer.send([0x91, key, 90])        # the right hand on channel 2
                    time.sleep(0.08)
                    peer.send([0x81, key, 0])
                time.sleep(0.1)
                for note in voicing:
                    peer.send([0x80, note, 0])
                time.sleep(0.1)
                got = peer.messages()[before:]
                left = [m for m in got if m[0] in (0x80, 0x90)]
                right = [m for m in got if m[0] in (0x81, 0x91)]
                takes.append((symbol, left, right))
    run.skip_if_lost()
    for symbol, left, right in takes:
        scale = set(parse_chord(symbol).scale)
        voicing = dict(p for progression in PROGRESSIONS for p in progression)[symbol]
        assert sorted(m[1] for m in left if m[0] == 0x90) == sorted(voicing), symbol
        ons = [m[1] for m in right if m[0] & 0xF0 == 0x90 and m[2] > 0]
        assert len(ons) == len(RHYTHM), (symbol, right)
        assert all(p % 12 in scale for p in ons), (symbol, ons, sorted(scale))
    sounding, orphans = note_balance([m for _, left, right in takes for m in left + right])
    assert not sounding and not orphans
    assert "engine errors 0" in daemon.log()


CHART = 'title: follow over a chart\ntempo: 120\ntime: 4/4\nkey: C\nchords: "| G7 | G7 |"\n'
CHART_NOTES = [67, 71, 74, 77]

DB7 = (49, 53, 59)                 # Db F B: G7's tritone substitute, in the left hand


def right_hand(peer: MidiPeer, keys: list[int], length: float, gap: float,
               held: tuple[int, ...] = ()) -> list[int]:
    """Play `keys` on channel 2, each `length` s then `gap` s of rest, while the left hand
    holds `held` on channel 1 (pressed before, released after); returns the pitches that
    came out on channel 2."""
    for note in held:
        peer.send([0x90, note, 70])
    if held:
        time.sleep(0.05)
    before = len(peer.messages())
    for key in keys:
        peer.send([0x91, key, 90])
        time.sleep(length)
        peer.send([0x81, key, 0])
        time.sleep(gap)
    time.sleep(0.1)
    for note in held:
        peer.send([0x80, note, 0])
    if held:
        time.sleep(0.1)
    return [m[1] for m in peer.messages()[before:] if m[0] == 0x91]


def over_the_chart(jack_server, tmp_path: Path, config: Path) -> DaemonProcess:
    """The daemon following what is played over CHART (two bars of G7) and its saved bank
    (CHART_NOTES in both bars)."""
    chart = tmp_path / "g7.yaml"
    chart.write_text(CHART)
    bank = write_bank(tmp_path / "bank.json", [[("G7", 0, 4)], [("G7", 0, 4)]],
                      [[[(p, i, "G7") for i, p in enumerate(CHART_NOTES)]] * 2],
                      title="follow over a chart", tempo=120)
    return DaemonProcess(jack_server, tmp_path, ["--follow", "--chart", str(chart),
                                                 "--phrases", str(bank),
                                                 "--config", str(config)])


@pytest.mark.jack
@pytest.mark.slow
def test_follow_with_a_chart_the_played_chord_wins_while_it_differs(jack_server,
                                                                      tmp_path: Path):
    daemon = over_the_chart(jack_server, tmp_path, follow_config(tmp_path))
    with take(daemon, ready_timeout=180) as run:
        start = time.monotonic()                       # the first key starts the clock
        # bar 1 (0-2 s): the chart's G7, then the tritone substitute held
        chart_before = right_hand(run.peer, [72], 0.1, 0.05)
        played = right_hand(run.peer, [72, 74, 76, 77], 0.1, 0.05, held=DB7)
        time.sleep(max(0.0, start + 2.3 - time.monotonic()))
        # bar 2: no key held, the chart again
        chart_after = right_hand(run.peer, [72, 74], 0.1, 0.05)
    run.skip_if_lost()
    assert chart_before == CHART_NOTES[:1]
    db7 = set(parse_chord("Db7").scale)
    assert len(played) == 4 and all(p % 12 in db7 for p in played), played
    assert not set(played) <= set(CHART_NOTES)
    assert chart_after and set(chart_after) <= set(CHART_NOTES), chart_after


@pytest.mark.jack
@pytest.mark.slow
def test_regenerate_with_a_chart_gives_new_follow_lines(jack_server, tmp_path: Path):
    daemon = over_the_chart(jack_server, tmp_path, follow_config(tmp_path))
    keys = [72, 74, 76, 77, 79, 81]
    with take(daemon, ready_timeout=300) as run:
        assert daemon.wait_log("new follow lines (generated, the other scales)",
                               timeout=300), daemon.log()
        # Db7 held (the chart says G7: the played chord wins), the right hand's figure
        old = right_hand(run.peer, keys, 0.08, 0.04, held=DB7)
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGUSR1)
        assert daemon.wait_log("new follow lines (generated, the first scales)", timeout=300,
                               after=mark), daemon.log()
        assert daemon.wait_log("new follow lines (generated, the other scales)", timeout=300,
                               after=mark), daemon.log()
        new = right_hand(run.peer, keys, 0.08, 0.04, held=DB7)
    run.skip_if_lost()
    # (which scale the notes sit on is the first tests' subject; here: new lines)
    assert len(old) == len(new) == len(keys), (old, new)
    assert all(p >= 60 for p in old + new), (old, new)      # above the split
    assert old != new, daemon.log()
