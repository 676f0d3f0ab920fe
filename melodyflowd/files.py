"""Files: reading the ones a user names (regular files of a bounded size, read without
blocking), and writing a file whole: a temporary file beside the target, renamed over it
once complete, so a reader (or a crash, or Ctrl-C) never meets half a file; it gets the
mode any new file of the user's gets (0666 less the umask), not mkstemp's 0600.

Every file melodyflowd reads (chart, config, phrase bank, cache entry, a model's files) is
opened with O_NONBLOCK (a FIFO does not hang the open) and checked with fstat on that very
descriptor: a FIFO, a device (/dev/zero), a socket or a directory is refused, and so is a
file over the limit for its kind; at most limit + 1 bytes are ever read (a file that grows
meanwhile is refused too). Symlinks are followed, to what they point at, which is checked
the same way. The limits are in the README (Troubleshooting).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from melodyflowd.errors import UserError

MB = 1 << 20
CHART_MAX_BYTES = 1 * MB          # a 1,000-bar chart is about 20 KB
CONFIG_MAX_BYTES = 1 * MB
BANK_MAX_BYTES = 64 * MB          # a bank of 1,000 bars x 16 variations is about 20 MB
IMPORT_MAX_BYTES = 16 * MB        # an iReal Pro playlist or export, a MusicXML file
UNPACKED_MAX_BYTES = 64 * MB      # the score inside a compressed MusicXML (.mxl) file
MODEL_TEXT_MAX_BYTES = 32 * MB    # a model's config, tokenizer and profile files
MODEL_WEIGHTS_MAX_BYTES = 8 << 30  # safetensors weights (mapped, not read whole)

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _size(count: int) -> str:
    return f"{count / MB:.1f} MB" if count >= MB else f"{count} bytes"


def _check(info: os.stat_result, what: str, limit: int) -> str | None:
    """Why a file with this stat is refused, or None."""
    if not stat.S_ISREG(info.st_mode):
        return f"{what} must be a regular file, this is {_kind(info.st_mode)}"
    if info.st_size > limit:
        return f"{what} is {_size(info.st_size)}, over the limit of {_size(limit)}"
    return None


def read_bytes(path: str | os.PathLike[str], what: str, limit: int,
               error: type[UserError] = UserError) -> bytes:
    """The bytes of the regular file `path`, at most `limit` of them. A special file or one
    over the limit raises `error` naming the file; OSError (not found, no permission) is
    the caller's to word."""
    name = os.fspath(path)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(
        os, "O_NOCTTY", 0)
    try:
        fd = os.open(name, flags)
    except OSError as exc:
        if exc.errno == errno.ENXIO:       # a FIFO with no writer, opened for reading only
            raise error(f"{what} must be a regular file, this is a FIFO (named pipe)",
                        file=str(name)) from None
        raise
    try:
        problem = _check(os.fstat(fd), what, limit)
        if problem:
            raise error(problem, file=str(name))
        os.set_blocking(fd, True)          # a regular file: reads do not wait for anyone
        chunks: list[bytes] = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 * MB, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise error(f"{what} grew over the limit of {_size(limit)} while being read",
                        file=str(name))
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_head(path: str | os.PathLike[str], count: int) -> bytes:
    """The first `count` bytes of a regular file, b"" for anything else (a FIFO, a device)
    or a file that cannot be opened: for guessing a file's kind, never blocking."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(
        os, "O_NOCTTY", 0)
    try:
        fd = os.open(os.fspath(path), flags)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        os.set_blocking(fd, True)
        return os.read(fd, count)
    except OSError:
        return b""
    finally:
        os.close(fd)


def check_file(path: str | os.PathLike[str], what: str, limit: int,
               error: type[UserError] = UserError) -> None:
    """For a file a library opens itself (transformers, safetensors): refuse it unless it
    is a regular file within the limit (stat follows symlinks; nothing is opened)."""
    name = os.fspath(path)
    problem = _check(os.stat(name), what, limit)
    if problem:
        raise error(problem, file=str(name))


def check_folder_files(folder: str | os.PathLike[str], what: str,
                       error: type[UserError] = UserError) -> None:
    """Every entry directly in `folder` that is not a directory must be a regular file of a
    bounded size (weights up to MODEL_WEIGHTS_MAX_BYTES, other files MODEL_TEXT_MAX_BYTES):
    a library that loads the folder then opens no FIFO and reads no device."""
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        info = os.stat(entry.path)        # follows a symlink
        if stat.S_ISDIR(info.st_mode):
            continue
        weights = entry.name.endswith((".safetensors", ".bin", ".pt", ".pth"))
        limit = MODEL_WEIGHTS_MAX_BYTES if weights else MODEL_TEXT_MAX_BYTES
        problem = _check(info, f"{what} file", limit)
        if problem:
            raise error(problem, file=entry.path)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file that appears at `target` only once the block ends without an error.
    OSError propagates (the caller words it); the temporary file never stays behind."""
    target = Path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
