"""Free the slots of dead JACK servers in jack2's shared registry.

jack2 keeps at most 8 servers in /dev/shm/jack-shm-registry. A server that ends cleanly
removes its entry; one that is killed (a test that kills it on purpose, a test run that
is interrupted) leaves it, and jack2 reclaims a dead entry only for a server of the same
name. Tests give each server a new name, so on a machine where tests run all day the
registry fills up and every new server fails with "Too many servers already active".
`reclaim_stale_servers()` zeroes the entries whose process is gone, as jack2 does itself
for a same-name restart; live entries are never touched.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

REGISTRY = Path("/dev/shm/jack-shm-registry")
MAX_SERVERS = 8
HEADER = 24           # magic, protocol, type, size, hdr_len, entry_len (6 x int32)
ENTRY = 264           # pid (int32) + "jack-<uid>:<name>" (JACK_SERVER_NAME_SIZE + 4)


def servers(path: Path = REGISTRY) -> list[tuple[int, str]]:
    """(pid, registered name) of every used slot."""
    try:
        data = path.read_bytes()
    except OSError:
        return []
    out = []
    for i in range(MAX_SERVERS):
        off = HEADER + ENTRY * i
        pid = int.from_bytes(data[off:off + 4], "little")
        if pid:
            out.append((pid, data[off + 4:off + ENTRY].split(b"\0")[0].decode(errors="replace")))
    return out


def reclaim_stale_servers(path: Path = REGISTRY) -> int:
    """Zero the registry slots of servers whose process no longer exists; how many."""
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - mmap needs the file object
    except OSError:
        return 0
    freed = 0
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size < HEADER + ENTRY * MAX_SERVERS:
            return 0
        with mmap.mmap(handle.fileno(), 0) as shm:
            for i in range(MAX_SERVERS):
                off = HEADER + ENTRY * i
                pid = int.from_bytes(shm[off:off + 4], "little")
                name = bytes(shm[off + 4:off + 12])
                if pid and name.startswith(b"jack-") and not _alive(pid):
                    shm[off:off + ENTRY] = bytes(ENTRY)
                    freed += 1
    return freed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
