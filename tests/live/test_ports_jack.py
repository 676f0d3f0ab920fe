"""ports.py through a real JACK server (dummy driver), with a small handler in place of
the engine; plus the one-line errors for a missing ALSA sequencer or JACK server."""

from __future__ import annotations

import os
import time
import uuid

import pytest

from melodyflowd.errors import UserError
from melodyflowd.live.ports import RING_SIZE, Timing, _split_name, list_ports, open_ports
from melodyflowd.settings import PortSettings
from tests.support.jack import MidiPeer


def transpose_octave(message: list[int], now: float) -> list[list[int]]:
    """Note messages an octave up; everything else unchanged; a marker note raises."""
    if len(message) == 3 and message[0] & 0xE0 == 0x80:
        if message[1] == 1:
            raise ValueError("boom")
        return [[message[0], message[1] + 12, message[2]]]
    return [message]


def names(sysex: bool = False) -> PortSettings:
    tag = uuid.uuid4().hex[:6]
    return PortSettings(backend="jack", in_name=f"t{tag} in", out_name=f"t{tag} out",
                        sysex=sysex)


@pytest.mark.jack
def test_ports_route_through_the_handler(jack_server) -> None:
    settings = names(sysex=True)
    ports = open_ports(settings, transpose_octave)
    try:
        jack_server.wait_for_ports([settings.in_name, settings.out_name])
        peer = MidiPeer(to_port=settings.in_name, from_port=settings.out_name)
        try:
            sent = [[0x90, 60, 100], [0xF8], [0xB0, 7, 90], [0x80, 60, 0],
                    [0xF0, 0x7D, 1, 2, 3, 0xF7], [0x91, 1, 64], [0x91, 70, 64]]
            for message in sent:
                peer.send(message)
                time.sleep(0.002)
            assert peer.wait_for(lambda got: len(got) >= 6)
            time.sleep(0.05)
            got = peer.messages()
        finally:
            peer.close()
        # The raising handler dropped exactly the marker note, and counted it.
        assert got == [[0x90, 72, 100], [0xF8], [0xB0, 7, 90], [0x80, 72, 0],
                       [0xF0, 0x7D, 1, 2, 3, 0xF7], [0x91, 82, 64]]
        assert ports.timing.count[0] == len(sent)
        assert ports.timing.errors[0] == 1
        stats = ports.timing.percentiles()
        assert stats["n"] == len(sent) and 0 < stats["p50"] <= stats["p99"] <= stats["max"]
    finally:
        ports.close()
    assert not any(settings.in_name in p for p in jack_server.ports())


@pytest.mark.jack
def test_list_ports_and_main_loop_send(jack_server) -> None:
    settings = names()
    ports = open_ports(settings, transpose_octave)
    try:
        jack_server.wait_for_ports([settings.in_name, settings.out_name])
        inputs, outputs = list_ports("jack")
        # Our output is a port others read from; our input one they write to.
        assert any(settings.out_name in p for p in inputs)
        assert any(settings.in_name in p for p in outputs)
        peer = MidiPeer(to_port=settings.in_name, from_port=settings.out_name)
        try:
            ports.stop_input()
            peer.send([0x90, 60, 100])            # nobody handles it now
            ports.send([0x80, 99, 0])              # what the main loop owes (panic)
            assert peer.wait_for(lambda got: [0x80, 99, 0] in got)
            time.sleep(0.05)
            assert peer.messages() == [[0x80, 99, 0]]
        finally:
            peer.close()
    finally:
        ports.close(drain=0.02)


@pytest.mark.jack
def test_name_already_taken_is_one_clear_line(jack_server) -> None:
    settings = names()
    ports = open_ports(settings, transpose_octave)
    try:
        jack_server.wait_for_ports([settings.in_name])
        with pytest.raises(UserError, match="already taken.*--in-name"):
            open_ports(settings, transpose_octave)
        other = PortSettings(backend="jack", in_name=settings.out_name, out_name="x y z")
        with pytest.raises(UserError, match="already taken"):
            open_ports(other, transpose_octave)
        # The failed attempts left nothing behind.
        assert sum(settings.in_name in p for p in jack_server.ports()) == 1
    finally:
        ports.close()


@pytest.mark.jack
def test_same_name_for_both_ports_is_refused(jack_server) -> None:
    with pytest.raises(UserError, match="same name"):
        open_ports(PortSettings(backend="jack", in_name="dup", out_name="dup"), transpose_octave)


def test_no_jack_server_is_one_clear_line(monkeypatch) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"nobody-{uuid.uuid4().hex[:8]}")
    monkeypatch.setenv("JACK_NO_START_SERVER", "1")
    with pytest.raises(UserError, match="JACK server") as info:
        open_ports(names(), transpose_octave)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(os.path.exists("/dev/snd/seq"), reason="this machine has an ALSA sequencer")
def test_alsa_without_sequencer_suggests_jack() -> None:
    with pytest.raises(UserError, match="--backend jack") as info:
        open_ports(PortSettings(backend="alsa"), transpose_octave)
    assert "/dev/snd/seq" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="--backend jack"):
        list_ports("alsa")


def test_unknown_backend() -> None:
    with pytest.raises(UserError, match="accepted: alsa, jack"):
        list_ports("oss")


def test_split_name_handles_alsa_and_jack_spellings() -> None:
    assert _split_name("melodyflowd in:melodyflowd in 128:0") == ("melodyflowd in",
                                                                  "melodyflowd in")
    assert _split_name("client:port") == ("client", "port")
    assert _split_name("IAC Bus 1") == ("IAC Bus 1", "IAC Bus 1")


def test_timing_ring_wraps_and_keeps_the_latest() -> None:
    timing = Timing()
    for i in range(RING_SIZE + 10):
        timing.ring[i % RING_SIZE] = 1000 * (i + 1)
        timing.count[0] = i + 1
    stats = timing.percentiles()
    assert stats["n"] == RING_SIZE
    assert stats["max"] == (RING_SIZE + 10)           # microseconds
    assert Timing().percentiles() == {}


@pytest.mark.jack
def test_server_gone_notices_a_stopped_or_restarted_jack_server(jack_server) -> None:
    from tests.support.jack import JackServer

    own = JackServer().start()                 # not the session's server: we kill this one
    ports = None
    try:
        settings = names()
        ports = open_ports(settings, transpose_octave)
        assert ports.server_gone() is None
        own.proc.kill()                        # SIGKILL: its socket file stays behind
        own.proc.wait()
        assert "died" in (ports.server_gone() or "")
        restarted = JackServer(name=own.name)
        restarted.start()
        try:
            assert "restarted" in (ports.server_gone() or "")
        finally:
            restarted.stop()
        assert "stopped" in (ports.server_gone() or "")
    finally:
        if ports is not None:
            ports.close()
        own.stop()
        os.environ["JACK_DEFAULT_SERVER"] = jack_server.name
