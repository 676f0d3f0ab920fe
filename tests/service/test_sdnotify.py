"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from melodyflowd.service import sdnotify


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tmp_path / "notify"
    sock.bind(str(path))
    sock.settimeout(10)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    yield sock
    sock.close()


def receive(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_unset_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready() is False


def test_missing_socket_does_not_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert sdnotify.watchdog() is False


def test_helpers_send_the_protocol_lines(listener: socket.socket) -> None:
    assert sdnotify.ready("playing Blues for Alice\n4 variations")
    assert receive(listener) == "READY=1\nSTATUS=playing Blues for Alice 4 variations"
    assert sdnotify.status("generating bar 3/12")
    assert receive(listener) == "STATUS=generating bar 3/12"
    assert sdnotify.watchdog()
    assert receive(listener) == "WATCHDOG=1"
    assert sdnotify.reloading()
    assert receive(listener) == "RELOADING=1"
    assert sdnotify.stopping()
    assert receive(listener) == "STOPPING=1"
    assert sdnotify.extend_timeout(90)
    assert receive(listener) == "EXTEND_TIMEOUT_USEC=90000000"


def test_abstract_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"melodyflowd-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(10)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.notify("READY=1")
        assert receive(sock) == "READY=1"


def test_sent_by_the_main_process_itself(listener: socket.socket) -> None:
    """With NotifyAccess=main systemd checks the sender's pid: it must be ours, not a child's."""
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    child = subprocess.Popen(
        [sys.executable, "-c", "from melodyflowd.service import sdnotify; sdnotify.ready()"],
        env=os.environ.copy())
    try:
        data, ancillary, _, _ = listener.recvmsg(4096, socket.CMSG_SPACE(12))
    finally:
        child.wait(timeout=30)
    assert data == b"READY=1"
    creds = [d for level, kind, d in ancillary
             if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS]
    assert creds, "no sender credentials"
    pid, _uid, _gid = struct.unpack("3i", creds[0][:12])
    assert pid == child.pid


def test_watchdog_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert sdnotify.watchdog_timeout() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert sdnotify.watchdog_timeout() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_timeout() == 30.0
    monkeypatch.setenv("WATCHDOG_PID", "1")          # meant for another process
    assert sdnotify.watchdog_timeout() is None
    monkeypatch.delenv("WATCHDOG_PID")
    monkeypatch.setenv("WATCHDOG_USEC", "soon")
    assert sdnotify.watchdog_timeout() is None
