"""Automatic connections (live/connect.py) and the backend choice (`auto`), through a real
JACK server: a "keyboard" and a "synth" are rtmidi clients of their own, and what the
keyboard plays must come out of the synth's port."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid

import pytest

from melodyflowd.errors import UserError
from melodyflowd.live.connect import matches, open_connector
from melodyflowd.live.ports import choose_backend, open_ports
from melodyflowd.service.config import load_settings
from melodyflowd.settings import PortSettings

NO_SEQUENCER = pytest.mark.skipif(os.path.exists("/dev/snd/seq"),
                                  reason="this machine has an ALSA sequencer")


def octave_up(message: list[int], now: float) -> list[list[int]]:
    if len(message) == 3 and message[0] & 0xE0 == 0x80:
        return [[message[0], message[1] + 12, message[2]]]
    return [message]


def test_a_pattern_is_part_of_a_name_or_a_shell_pattern_ignoring_case() -> None:
    assert matches("keystation", ["a2j:Keystation 49 [24] (capture): Keystation MIDI 1"])
    assert not matches("keystation", ["FLUID Synth (123):Synth input port (123:0)"])
    assert matches("fluid*", ["FLUID Synth (123):Synth input port (123:0)"])
    assert not matches("synth*", ["FLUID Synth (123):Synth input port (123:0)"])  # whole name
    assert matches("system:midi_capture_?", ["system:midi_capture_2"])
    assert not matches("system:midi_capture_?", ["system:midi_capture_12"])
    assert matches("usb keys", ["system:midi_capture_1", "alsa_pcm:USB Keys/midi_capture_1"])


def test_patterns_in_the_config_are_text_or_lists(tmp_path) -> None:
    config = tmp_path / "my.yaml"
    config.write_text("ports:\n  connect_in: Keystation\n  connect_out: [fluid*, qsynth]\n")
    settings = load_settings(str(config))
    assert settings.ports.connect_in == ("Keystation",)
    assert settings.ports.connect_out == ("fluid*", "qsynth")
    config.write_text("ports:\n  connect_in: 5\n")
    with pytest.raises(UserError, match=r"my.yaml:2:.*ports.connect_in"):
        load_settings(str(config))
    config.write_text("ports:\n  connect_out: ['']\n")
    with pytest.raises(UserError, match="ports.connect_out"):
        load_settings(str(config))


class Keyboard:
    """A client with one virtual output port, as a USB keyboard shows up on JACK."""

    def __init__(self, name: str) -> None:
        import rtmidi

        self.name = name
        self.out = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, name)
        self.out.open_virtual_port(name)

    def close(self) -> None:
        self.out.close_port()
        self.out.delete()


class Synth:
    """A client with one virtual input port that keeps what it receives."""

    def __init__(self, name: str) -> None:
        import rtmidi

        self.name = name
        self.inp = rtmidi.MidiIn(rtmidi.API_UNIX_JACK, name)
        self.inp.open_virtual_port(name)

    def wait_for(self, wanted: list[int], timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.inp.get_message()
            if event is not None and list(event[0]) == wanted:
                return True
            if event is None:
                time.sleep(0.005)
        return False

    def close(self) -> None:
        self.inp.close_port()
        self.inp.delete()


def arrives(keys: Keyboard, message: list[int], synth: Synth, expected: list[int]) -> bool:
    """Send until the synth gets `expected` (JACK makes a new connection live at the next
    cycle: what is sent in the same one may find no connection yet)."""
    for _ in range(10):
        keys.out.send_message(message)
        if synth.wait_for(expected, timeout=0.5):
            return True
    return False


def connections(port: str) -> list[str]:
    import jack

    client = jack.Client(f"look{uuid.uuid4().hex[:4]}", no_start_server=True)
    try:
        return [p.name for p in client.get_all_connections(port)]
    finally:
        client.close()


@pytest.mark.jack
def test_matching_ports_are_joined_now_and_when_they_appear(jack_server) -> None:
    tag = uuid.uuid4().hex[:6]
    settings = PortSettings(backend="jack", in_name=f"c{tag} in", out_name=f"c{tag} out",
                            connect_in=(f"keys{tag}",), connect_out=(f"synth{tag}*",))
    early = Keyboard(f"Keys{tag} early")
    synth = Synth(f"Synth{tag}")
    other = Synth(f"other{tag}")                          # matches no pattern
    ports = open_ports(settings, octave_up)
    connector = open_connector(settings)
    late = None
    try:
        made = connector.poll()
        assert sorted(made) == sorted([
            f"connected Keys{tag} early:Keys{tag} early -> {settings.in_name}:{settings.in_name}",
            f"connected {settings.out_name}:{settings.out_name} -> Synth{tag}:Synth{tag}"])
        assert connector.poll() == []                         # nothing new: nothing made
        assert arrives(early, [0x90, 60, 100], synth, [0x90, 72, 100])   # keys -> us -> synth
        assert connections(f"other{tag}:other{tag}") == []
        # Never ourselves: our output does not feed our input, though "c<tag>" is in both.
        assert f"{settings.out_name}:{settings.out_name}" not in connections(
            f"{settings.in_name}:{settings.in_name}")

        late = Keyboard(f"keys{tag} plugged in later")
        assert connector.poll() == [f"connected keys{tag} plugged in later:keys{tag} plugged "
                                    f"in later -> {settings.in_name}:{settings.in_name}"]
        assert arrives(late, [0x90, 50, 90], synth, [0x90, 62, 90])

        # A connection removed by hand stays removed while the port stays.
        import jack

        hand = jack.Client(f"hand{tag}", no_start_server=True)
        hand.disconnect(f"Keys{tag} early:Keys{tag} early",
                        f"{settings.in_name}:{settings.in_name}")
        hand.close()
        assert connector.poll() == []
        assert f"Keys{tag} early:Keys{tag} early" not in connections(
            f"{settings.in_name}:{settings.in_name}")

        # Unplugged and plugged in again: joined again.
        late.close()
        assert connector.poll() == []
        late = Keyboard(f"keys{tag} plugged in later")
        assert len(connector.poll()) == 1
        assert arrives(late, [0x80, 50, 0], synth, [0x80, 62, 0])
        # Gone and back between two polls (a restart): the new port is joined too.
        late.close()
        late = Keyboard(f"keys{tag} plugged in later")
        assert len(connector.poll()) == 1
        assert arrives(late, [0x90, 51, 80], synth, [0x90, 63, 80])
    finally:
        connector.close()
        ports.close()
        for client in (early, synth, other, late):
            if client is not None:
                client.close()


@pytest.mark.jack
def test_no_patterns_no_connector(jack_server) -> None:
    assert open_connector(PortSettings(backend="jack")) is None


def test_patterns_on_a_backend_without_a_graph_are_refused() -> None:
    from melodyflowd.live.connect import check_connect_backend

    check_connect_backend(PortSettings(backend="coremidi"))          # no patterns: fine
    with pytest.raises(UserError, match="ALSA and JACK, not coremidi"):
        check_connect_backend(PortSettings(backend="coremidi", connect_in=("keys",)))


@pytest.mark.jack
@NO_SEQUENCER
def test_auto_picks_a_running_jack_server_without_a_sequencer(jack_server) -> None:
    assert choose_backend("auto") == "jack"
    assert choose_backend("jack") == "jack"


@NO_SEQUENCER
def test_auto_without_sequencer_or_server_is_one_line_saying_what_to_do(monkeypatch) -> None:
    monkeypatch.setenv("JACK_DEFAULT_SERVER", f"nobody-{uuid.uuid4().hex[:8]}")
    with pytest.raises(UserError) as info:
        choose_backend("auto")
    text = str(info.value)
    assert "/dev/snd/seq" in text and "JACK" in text and "jackd" in text and "\n" not in text
    with pytest.raises(UserError, match="JACK server"):
        choose_backend("jack")
    with pytest.raises(UserError, match="modprobe snd-seq"):
        choose_backend("alsa")


TOOLS_CMD = (sys.executable, "-c",
             "from melodyflowd.cli import tools_main; tools_main(prog_name='melodyflow')")
DAEMON_CMD = (sys.executable, "-c",
              "from melodyflowd.cli import daemon_main; daemon_main(prog_name='melodyflowd')")


@NO_SEQUENCER
@pytest.mark.parametrize("command", ["ports", "daemon"])
def test_nothing_to_open_is_one_line_before_any_generation(command, tmp_path) -> None:
    """Without a sequencer and a server: our one line and exit 1 (a server may start: a
    service manager retries), no lines of ALSA's or libjack's, and the daemon stops before
    it loads the model."""
    env = {**os.environ, "JACK_DEFAULT_SERVER": f"nobody-{uuid.uuid4().hex[:8]}"}
    if command == "ports":
        cmd = [*TOOLS_CMD, "ports"]
    else:
        chart = tmp_path / "song.yaml"
        chart.write_text('title: t\ntempo: 120\ntime: 4/4\nchords: "| C7 | F7 |"\n')
        cmd = [*DAEMON_CMD, "--chart", str(chart)]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, lines
    assert "no MIDI system" in lines[0] and "jackd" in lines[0]


@pytest.mark.jack
@NO_SEQUENCER
def test_ports_command_lists_the_jack_ports_by_default(jack_server) -> None:
    keys = Keyboard(f"listme{uuid.uuid4().hex[:6]}")
    try:
        result = subprocess.run([*TOOLS_CMD, "ports"], env=jack_server.env,
                                capture_output=True, text=True, timeout=60)
    finally:
        keys.close()
    assert result.returncode == 0, result.stderr
    assert f"  {keys.name}:{keys.name}" in result.stdout.split("outputs:")[0]
