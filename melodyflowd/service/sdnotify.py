"""The systemd notify protocol (sd_notify), without libsystemd.

A service with `Type=notify` tells systemd how it is doing by sending datagrams
of `KEY=VALUE` lines to the AF_UNIX socket named in $NOTIFY_SOCKET: a path, or
`@name` for the abstract namespace. When the variable is unset (not started by
systemd) every call is a no-op that returns False. Calls never raise: a service
must not die because its supervisor went away.

Not for the MIDI callback: each call opens a socket. The daemon's live loop
calls `watchdog()` about every `watchdog_timeout() / 2` seconds.
"""

from __future__ import annotations

import os
import socket


def _address() -> str | None:
    path = os.environ.get("NOTIFY_SOCKET", "")
    if path.startswith("@"):
        return "\0" + path[1:]          # abstract namespace
    if path.startswith("/"):
        return path
    return None                         # unset, or a transport we do not speak (vsock)


def notify(state: str) -> bool:
    """Send `state` (newline-separated KEY=VALUE lines). True if it was sent."""
    address = _address()
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8", "replace"))
    except OSError:
        return False
    return True


def _one_line(text: str) -> str:
    return " ".join(text.split())


def ready(status: str | None = None) -> bool:
    """READY=1: ports open and a phrase bank playable (ends `systemctl start` waiting)."""
    return notify("READY=1" + (f"\nSTATUS={_one_line(status)}" if status else ""))


def status(text: str) -> bool:
    """STATUS=...: one line that `systemctl status` shows."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """WATCHDOG=1: the live loop is alive (needed when the unit sets WatchdogSec=)."""
    return notify("WATCHDOG=1")


def reloading() -> bool:
    """RELOADING=1: a reload (SIGHUP) began; send ready() when it is done."""
    return notify("RELOADING=1")


def extend_timeout(seconds: float) -> bool:
    """EXTEND_TIMEOUT_USEC=...: starting (or stopping) needs `seconds` more from now."""
    return notify(f"EXTEND_TIMEOUT_USEC={max(0, round(seconds * 1_000_000))}")


def stopping() -> bool:
    """STOPPING=1: shutting down (note-offs are being sent, ports closed)."""
    return notify("STOPPING=1")


def watchdog_timeout() -> float | None:
    """The unit's watchdog timeout in seconds (from $WATCHDOG_USEC), None when off.

    None also when $WATCHDOG_PID names another process (the variable was inherited).
    Send watchdog() at least twice per timeout.
    """
    pid = os.environ.get("WATCHDOG_PID")
    if pid and pid.strip() != str(os.getpid()):
        return None
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 1_000_000 if usec > 0 else None
