"""Hostile files behind a running daemon (SIGHUP, SIGUSR1): one log line each, the old
chart and bank keep playing, SIGTERM still stops it at once with every note off."""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.service.test_daemon_e2e import write_files
from tests.support.jack import DaemonProcess, note_balance, note_ons, take

pytestmark = pytest.mark.jack


def _plays(peer, key: int = 70) -> bool:
    before = len(note_ons(peer.messages()))
    peer.send([0x90, key, 90])
    came = peer.wait_for(lambda got: len(note_ons(got)) > before, timeout=3)
    peer.send([0x80, key, 0])
    return came


def test_special_and_hostile_files_on_reload_keep_the_old_state_and_stop_cleanly(
        jack_server, tmp_path):
    chart, bank = write_files(tmp_path)
    config = tmp_path / "config.yaml"
    config.write_text(f"chart: {chart}\nphrases: {bank}\n")
    daemon = DaemonProcess(jack_server, tmp_path, ["--config", str(config)])
    with take(daemon, settle=None) as run:
        peer = run.peer
        assert _plays(peer)
        chart_text, bank_text = chart.read_text(), bank.read_text()

        # The chart: a FIFO, then /dev/zero, then nested 20,000 deep.
        for make, what in ((lambda: os.mkfifo(chart), "FIFO"),
                           (lambda: chart.symlink_to("/dev/zero"), "character device"),
                           (lambda: chart.write_text("tempo: " + "[" * 20_000), "nested")):
            chart.unlink()
            make()
            mark = len(daemon.lines)
            daemon.send_signal(signal.SIGHUP)
            assert daemon.wait_log("chart reload failed", timeout=5, after=mark), daemon.log()
            failed = [line for line in daemon.lines[mark:] if "reload failed" in line]
            assert what in failed[0] and "old chart keeps playing" in failed[0], failed
            assert _plays(peer), daemon.log()
        chart.unlink()
        chart.write_text(chart_text)

        # The saved bank nested 100,000 deep, then a 5,000-digit number: twenty SIGUSR1.
        for text in ("[" * 100_000, '{"seed": ' + "9" * 5000 + "}"):
            bank.write_text(text)
            mark = len(daemon.lines)
            for _ in range(10):
                daemon.send_signal(signal.SIGUSR1)
                time.sleep(0.05)
            assert daemon.wait_log("cannot reload the phrase bank", timeout=5, after=mark)
            assert _plays(peer), daemon.log()
        assert "internal error" not in daemon.log() and "Traceback" not in daemon.log()
        bank.write_text(bank_text)

        # The config behind a FIFO; SIGTERM with a key held ends it at once.
        config.unlink()
        os.mkfifo(config)
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGHUP)
        assert daemon.wait_log("config reload failed", timeout=5, after=mark), daemon.log()
        peer.send([0x90, 72, 90])
        assert peer.wait_for(lambda got: note_balance(got)[0], timeout=3)
        # SIGTERM must end it by itself: ignored, stop() kills it and the status is not 0.
        status = daemon.stop(timeout=30)
    assert status == 0, daemon.log()
    run.skip_if_lost()               # a note-off JACK dropped would look like a stuck note
    assert note_balance(peer.messages())[0] == {}
