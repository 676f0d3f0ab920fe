"""`melodyflowd --connect-in/--connect-out` as a subprocess on a private JACK server: a synth
that is there at start is joined at once, a keyboard plugged in after `ready` is joined by
the main loop, and its notes come out of the synth's port as phrase notes."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from tests.live.test_connect import Keyboard, Synth, arrives
from tests.support.jack import DaemonProcess, write_bank

CHART = 'title: connect test\ntempo: 120\ntime: 4/4\nchords: "| Cmaj7 |"\n'


def song(tmp_path: Path, notes: list[tuple[int, float]]) -> tuple[Path, Path]:
    """CHART (a bar of Cmaj7) and a saved bank whose phrase is `notes` (pitch, beat)."""
    chart = tmp_path / "song.yaml"
    chart.write_text(CHART)
    bank = write_bank(tmp_path / "bank.json", [[("Cmaj7", 0, 4)]],
                      [[[(pitch, beat, "Cmaj7") for pitch, beat in notes]]],
                      title="connect test")
    return chart, bank


@pytest.mark.jack
def test_daemon_joins_a_synth_at_start_and_a_keyboard_plugged_in_later(jack_server, tmp_path):
    tag = uuid.uuid4().hex[:6]
    chart, bank = song(tmp_path, [(76, 0.0), (79, 2.0)])
    synth = Synth(f"synth{tag}")
    keys = None
    daemon = DaemonProcess(jack_server, tmp_path,
                           ["--chart", str(chart), "--phrases", str(bank),
                            "--connect-in", f"*KEYS{tag}*", "--connect-out", f"synth{tag}"],
                           tag=tag)
    try:
        daemon.wait_ready()
        assert daemon.wait_log(f"-> synth{tag}:synth{tag}", timeout=5), daemon.log()
        keys = Keyboard(f"usb keys{tag}")
        assert daemon.wait_log(f"connected usb keys{tag}:usb keys{tag} -> {daemon.in_name}",
                               timeout=10), daemon.log()
        # Any key: the phrase's first note (a key lost while the connection was being made
        # in JACK's current cycle never reached melodyflowd, and is sent again).
        assert arrives(keys, [0x90, 40, 99], synth, [0x90, 76, 99]), daemon.log()
        keys.out.send_message([0x80, 40, 0])
    finally:
        status = daemon.stop()
        if keys is not None:
            keys.close()
        synth.close()
    assert status == 0, daemon.log()
    assert sum("connected" in line for line in daemon.lines) == 2, daemon.log()


@pytest.mark.jack
def test_new_patterns_in_the_config_apply_at_sighup(jack_server, tmp_path):
    tag = uuid.uuid4().hex[:6]
    chart, bank = song(tmp_path, [(76, 0.0)])
    config = tmp_path / "my.yaml"
    config.write_text("ports:\n  connect_out: []\n")
    synth = Synth(f"synth{tag}")
    daemon = DaemonProcess(jack_server, tmp_path, ["--chart", str(chart), "--phrases",
                                                   str(bank), "--config", str(config)],
                           tag=tag)
    try:
        daemon.wait_ready()
        assert not daemon.wait_log("connected", timeout=1.5)
        config.write_text(f"ports:\n  connect_out: synth{tag}\n")
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGHUP)
        assert daemon.wait_log(f"-> synth{tag}:synth{tag}", timeout=10, after=mark), \
            daemon.log()
        peer = daemon.peer()
        try:
            for _ in range(10):              # the phrase has one note: every key plays it
                peer.send([0x90, 40, 99])
                if synth.wait_for([0x90, 76, 99], timeout=0.5):
                    break
                peer.send([0x80, 40, 0])
            else:
                raise AssertionError("nothing reached the synth:\n" + daemon.log())
        finally:
            peer.close()
    finally:
        status = daemon.stop()
        synth.close()
    assert status == 0, daemon.log()
    assert not any("take effect at the next restart" in line for line in daemon.lines)
