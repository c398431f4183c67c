"""Files fluxroute keeps: owner-only (directories 0700, files 0600) whatever the umask, written atomically,
read back without following symbolic links."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
TEMP_SUFFIX = ".tmp"


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) as an owner-only directory. One that already exists is left as it
    is: it may be a directory the user chose and shares on purpose."""
    if path.is_dir():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=DIR_MODE)
    except FileExistsError:
        if not path.is_dir():
            raise
        return  # another process created it first
    os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask


def private_file(path: Path) -> None:
    """Create `path` empty and owner-only if it does not exist (an existing file is left as it is)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    except FileExistsError:
        return
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Write `data` to `path`, owner-only: into a temporary name in the same directory, then renamed over
    `path`. A reader never sees half a file, concurrent writers leave one whole one, and a symbolic link
    planted at `path` is replaced, not written through."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), FILE_MODE)
            file.write(data)
            file.flush()
            os.fsync(file.fileno())  # the images are paid for: on disk before the record says they are
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` (threads and processes alike) while choosing and writing names."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


class NotARegularFile(OSError):
    """A recorded path that is now a symbolic link, a directory, a device or a pipe."""


def read_regular(path: Path) -> bytes:
    """The bytes of `path`, which must be a regular file and not a symbolic link.

    Raises:
        NotARegularFile: `path` is a symbolic link or not a regular file (nothing is read).
        OSError: it cannot be opened or read (missing, no permission).
    """
    try:
        # O_NONBLOCK: opening a planted FIFO returns at once instead of waiting for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):  # EMLINK: O_NOFOLLOW on a link, on the BSDs
            raise NotARegularFile(exc.errno, "a symbolic link", str(path)) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
    with os.fdopen(fd, "rb") as file:
        return file.read()
