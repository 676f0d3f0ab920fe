"""Free the slots of dead JACK servers in jack2's shared registry.

jack2 keeps at most 8 servers in /dev/shm/jack-shm-registry. A server that ends cleanly
removes its entry; one that is killed (a test that kills it on purpose, a test run that
is interrupted) leaves it, and jack2 reclaims a dead entry only for a server of the same
name. Tests give each server a new name, so on a machine where tests run all day the
registry fills up and every new server fails with "Too many servers already active".
`reclaim_stale_servers()` zeroes the entries whose process is gone, as jack2 does itself
for a same-name restart; live entries are never touched.

A server also leaves files when it is killed, or when clients outlive it: its shared memory
segments (/dev/shm/jack-<uid>-<n>, 100 MB for the dummy driver), its socket and a semaphore
file for each client (jack_sem.<uid>_<server>_<client>). `remove_server_files(name)` and
`release_dead_segments()` remove them once the server is gone; JackServer.stop calls both.
What all servers share stays, as jack2 leaves it: the registry itself and the metadata
folder jack_db-<uid> (removing either while another server starts would break that server).
"""

from __future__ import annotations

import contextlib
import glob
import mmap
import os
import re
from pathlib import Path

SHM = Path("/dev/shm")
REGISTRY = SHM / "jack-shm-registry"
MAX_SERVERS = 8
HEADER = 24           # magic, protocol, type, size, hdr_len, entry_len (6 x int32)
ENTRY = 264           # pid (int32) + "jack-<uid>:<name>" (JACK_SERVER_NAME_SIZE + 4)
SEGMENTS = HEADER + ENTRY * MAX_SERVERS     # then the segment table, hdr_len says where
MAX_SEGMENTS = 256


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


def release_dead_segments(path: Path = REGISTRY) -> list[str]:
    """Unlink the shared memory segments whose allocating process is gone and free their
    entries (jack2 does this itself only when the next server starts). Each entry of the
    table (entry_len bytes, from hdr_len): index int16, pad, allocator pid, size, name.
    Only entries of dead allocators are written, and never their index."""
    try:
        handle = open(path, "r+b")  # noqa: SIM115 - mmap needs the file object
    except OSError:
        return []
    freed: list[str] = []
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size < HEADER:
            return []
        with mmap.mmap(handle.fileno(), 0) as shm:
            hdr_len = int.from_bytes(shm[16:20], "little") or SEGMENTS
            entry_len = int.from_bytes(shm[20:24], "little")
            if entry_len < 16 or hdr_len + entry_len * MAX_SEGMENTS > size:
                return []
            for i in range(MAX_SEGMENTS):
                off = hdr_len + entry_len * i
                pid = int.from_bytes(shm[off + 4:off + 8], "little", signed=True)
                name = bytes(shm[off + 12:off + entry_len]).split(b"\0")[0].decode(
                    errors="replace")
                if pid <= 0 or _alive(pid) or not name.startswith("/jack-"):
                    continue
                with contextlib.suppress(FileNotFoundError):
                    (SHM / name.lstrip("/")).unlink()
                # As jack_release_shm_entry: allocator, size and name go; the index (the
                # entry's own position, which names the next segment made there) stays.
                shm[off + 4:off + entry_len] = bytes(entry_len - 4)
                freed.append(name)
    return freed


def server_files(name: str) -> list[Path]:
    """The socket and semaphore files of the JACK server `name` and of its clients."""
    uid = os.getuid()
    folders = {SHM, Path("/tmp")}
    if os.environ.get("JACK_TMPDIR"):
        folders.add(Path(os.environ["JACK_TMPDIR"]))
    found: list[Path] = []
    for folder in folders:
        found += folder.glob(f"jack_sem.{uid}_{glob.escape(name)}_*")
        found += folder.glob(f"jack_{glob.escape(name)}_{uid}_*")
    return found


def remove_server_files(name: str) -> list[Path]:
    """Remove what server_files(name) finds; only once that server no longer runs."""
    removed = []
    for path in server_files(name):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    return removed


def remove_files_of_dead_test_runs(prefix: str = "mfd-test-") -> list[Path]:
    """Files of test servers ("<prefix><pid>-<hex>", tests.support.jack.JackServer) whose
    test process is gone: what an interrupted run left behind."""
    removed: list[Path] = []
    pattern = re.compile(rf"^jack(?:_sem\.\d+)?_({re.escape(prefix)}(\d+)-[0-9a-f]+)_")
    for path in SHM.iterdir():
        found = pattern.match(path.name)
        if found and not _alive(int(found.group(2))):
            removed += remove_server_files(found.group(1))
    return removed
