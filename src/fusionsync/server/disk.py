"""Least privilege on disk: the server's root folder and the secrets in it.

The server runs with ``umask 077``: every folder it makes is 0700 and every file 0600 (blobs, the database
and its ``-wal``/``-shm``, upload temporaries, the audit log). Secrets are written atomically with their final
mode (``O_CREAT|O_EXCL|O_NOFOLLOW``, 0600, then a rename) and read without following a symbolic link; a key
or clients file that others may read stops the server, as ssh refuses such a key. A folder becomes a root
only when it is new, empty or already ours (it holds the marker file): the start-up sweep never runs in a
folder that merely happens to be named.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path

MARKER = ".fusionsync-root"
"""Marks a folder as a server's root (or blob folder): only such a folder is swept at start."""
OURS = frozenset(
    {
        MARKER,
        "catalog.sqlite",
        "catalog.sqlite-wal",
        "catalog.sqlite-shm",
        "catalog.sqlite-journal",
        "server.key",
        "server.lock",
        "clients.json",
        "client_credentials.json",
        "audit.log",
        "blobs",
        "tmp",
    }
)
"""Names a root may hold before it has a marker: a root of an earlier release, or one prepared by hand."""


class UnsafeFile(Exception):
    """A file or folder the server will not use as it is, in one sentence."""


def private_umask() -> None:
    """From now on, what this process creates is its owner's only."""
    os.umask(0o077)


def claim_folder(folder: Path) -> None:
    """Make ``folder`` a root of ours (created 0700 when missing), or refuse it (``UnsafeFile``)."""
    try:
        info = os.lstat(folder)
    except FileNotFoundError:
        folder.mkdir(mode=0o700, parents=True)
        info = os.lstat(folder)
    if stat.S_ISLNK(info.st_mode):
        info = os.stat(folder)  # a root given as a link: the folder it names must be ours
    if not stat.S_ISDIR(info.st_mode):
        raise UnsafeFile(f"{folder} is not a folder")
    if info.st_uid != os.geteuid():
        raise UnsafeFile(f"{folder} belongs to another user; serve from a folder of your own")
    names = set(os.listdir(folder))
    if MARKER not in names:
        strangers = sorted(names - OURS)
        if strangers:
            shown = ", ".join(strangers[:3]) + (", ..." if len(strangers) > 3 else "")
            raise UnsafeFile(
                f"{folder} is not empty ({shown}) and is not a fusionsync root (no {MARKER}); "
                "choose a new or empty folder"
            )
        write_private(folder / MARKER, b"fusionsync server root\n")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    for name in ("blobs", "tmp"):
        path = folder / name
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISLNK(os.lstat(path).st_mode):
                raise UnsafeFile(f"{path} is a symbolic link; the server does not follow links in its root")


def write_private(path: Path, data: str | bytes) -> None:
    """Replace ``path`` atomically by a file readable by its owner only (0600 from its creation); a link at
    ``path`` is replaced, never followed."""
    temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data.encode() if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_private(path: Path) -> bytes:
    """The bytes of a secret file, which must be a regular file of ours that no one else may read or write
    (``FileNotFoundError`` when missing, ``UnsafeFile`` otherwise)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the name is a symbolic link
            raise UnsafeFile(f"{path} is a symbolic link; give the file itself") from exc
        raise
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{path} is not a regular file")
        if info.st_uid != os.geteuid():
            raise UnsafeFile(f"{path} belongs to another user")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise UnsafeFile(
                f"permissions {mode:04o} for {path} are too open: it must be readable by its owner only "
                f"(chmod 600 {path})"
            )
        return fh.read()
