"""The test JACK servers leave nothing behind in /dev/shm: not when stopped with clients
still connected, not when killed (tests/support/jack.py, jack_registry.py)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.support.jack import JackServer, jack_available
from tests.support.jack_registry import REGISTRY, server_files

pytestmark = pytest.mark.jack


def own_segments(pid: int) -> list[str]:
    """Registry segments allocated by process `pid`."""
    try:
        data = REGISTRY.read_bytes()
    except OSError:
        return []
    hdr_len = int.from_bytes(data[16:20], "little")
    entry_len = int.from_bytes(data[20:24], "little")
    names = []
    for i in range(256):
        off = hdr_len + entry_len * i
        if int.from_bytes(data[off + 4:off + 8], "little", signed=True) == pid:
            names.append(data[off + 12:off + entry_len].split(b"\0")[0].decode())
    return names


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_a_server_leaves_no_files(how: str, jack_server) -> None:
    if jack_available() is not None:
        pytest.skip(jack_available())
    import rtmidi

    server = JackServer(name=f"mfd-test-{os.getpid()}-{uuid.uuid4().hex[:6]}").start()
    client = None
    try:
        client = rtmidi.MidiOut(rtmidi.API_UNIX_JACK, "leftover probe")
        client.open_virtual_port("leftover probe")
        pid = server.proc.pid
        segments = own_segments(pid)
        assert segments and server_files(server.name)      # what there is to clean
        if how == "killed":
            server.proc.kill()
            server.proc.wait()
        server.stop()                       # the client is still open, on a gone server
        assert server_files(server.name) == []
        assert own_segments(pid) == []
        assert not any(Path("/dev/shm", name.lstrip("/")).exists() for name in segments)
    finally:
        if client is not None:
            client.delete()
        server.stop()
        os.environ["JACK_DEFAULT_SERVER"] = jack_server.name
    assert server_files(server.name) == []
