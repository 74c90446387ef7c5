"""Faults of the local side, end to end through `fusionsync sync` in a subprocess: a full disk, a file
size limit, folders and files that refuse access.

Each must end the same way: the item that hit the fault fails with one sentence naming the local
file and what went wrong, the other items are done, nothing half-written stands at a destination
path, no temporary is left behind, the exit status is 1, and the pass after the fault is gone
converges.
"""

from __future__ import annotations

import ctypes
import functools
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from fusionsync.catalog.layout import DistKey, local_relative_path
from tests.helpers import RunningServer
from tests.sync_fixtures import local_files, no_temporaries, payload, remote_bytes, seed, write_local

SMALL, BIG = 100_000, 4 * 2**20
TOO_BIG = "the file would be larger than this process may write (file size limit)"
FULL = "the disk is full (no space left on device)"
FILE_SIZE_LIMIT = 1_000_000  # what a process may write to one file: the small files fit, the big one not
JUST_OVER = FILE_SIZE_LIMIT + 100  # the write that crosses the limit is the file's last one
TMPFS_SIZE = "2m"  # a disk the small files fit on, the big one not
PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 24, 1, 2

# Runs inside a private mount namespace: a small tmpfs over the local root, the sync, then a copy of
# what the sync left there (the tmpfs vanishes with the namespace).
IN_TMPFS = """
import shutil, subprocess, sys
size, mountpoint, copy_to, *command = sys.argv[1:]
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=" + size, "tmpfs", mountpoint], check=True)
done = subprocess.run(command)
shutil.copytree(mountpoint, copy_to, symlinks=True)
sys.exit(done.returncode)
"""


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


def sync_command(server: RunningServer, root: Path, direction: str, *extra: str, command: str = "sync") -> list[str]:
    return [
        sys.executable, "-m", "fusionsync", command, direction, "--local-path", str(root), "--catalog", "cat",
        "--dataset", "A", "--credentials", str(server.credentials_file), "--log-path", str(root.parent), *extra,
    ]  # fmt: skip


def run(command: list[str], preexec_fn: Callable[[], None] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=120, preexec_fn=preexec_fn)


def failures(done: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The failed items the CLI printed (``failed: PATH: REASON``, one line each)."""
    assert "Traceback" not in done.stderr, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("failed: ")]
    return dict(line.removeprefix("failed: ").split(": ", 1) for line in lines)


def file_size_limit(limit: int) -> Callable[[], None]:
    """preexec_fn: writes past ``limit`` bytes of a file fail with EFBIG (SIGXFSZ ignored, not fatal)."""

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return limited


def as_ordinary_user() -> None:
    """preexec_fn: permission bits bind the child as they bind any user, root included.

    Root passes every permission check through CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH; dropped
    from the bounding set, they are gone after exec. The child stays uid 0, the owner of the test's
    files, so it reads and writes them as their owner, and a folder of mode 0o500 refuses it.
    """
    if os.geteuid() != 0:
        return  # an ordinary user already
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


@functools.cache
def private_tmpfs() -> bool:
    """Whether a tmpfs can be mounted in a private mount namespace (as root, or in a user namespace)."""
    with tempfile.TemporaryDirectory() as folder:
        try:
            probe = subprocess.run(
                ["unshare", "--mount", "--map-root-user", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder],
                capture_output=True,
                timeout=30,
            )
        except OSError:
            return False
    return probe.returncode == 0


def sync_on_small_disk(command: list[str], root: Path, seen: Path) -> tuple[subprocess.CompletedProcess[str], str]:
    """Run ``command`` with ``root`` on a 2 MiB tmpfs; what it left is copied to ``seen``.

    Where private mount namespaces are not allowed, the disk is "full" for each file past the
    file size limit instead (EFBIG rather than ENOSPC), so the test runs everywhere.
    """
    if private_tmpfs():
        unshared = ["unshare", "--mount", "--map-root-user", sys.executable, "-c", IN_TMPFS]
        return run([*unshared, TMPFS_SIZE, str(root), str(seen), *command]), FULL
    done = run(command, preexec_fn=file_size_limit(FILE_SIZE_LIMIT))
    os.rename(root, seen)
    return done, TOO_BIG


@pytest.mark.parametrize("disk", ["file-size-limit", "full-disk"])
def test_a_file_that_does_not_fit_fails_alone_and_leaves_nothing(
    server: RunningServer, tmp_path: Path, disk: str
) -> None:
    server.create_dataset("cat", "A")
    keys = [DistKey("cat", "A", f"2024010{i}", "csv") for i in (1, 2, 3)]
    sizes = dict(zip(keys, (SMALL, BIG if disk == "full-disk" else JUST_OVER, SMALL), strict=True))
    for key, size in sizes.items():
        assert server.upload("cat", "A", key.series, key.format, payload(key, size)).status == 200
    root, seen = tmp_path / "mirror", tmp_path / "seen"
    root.mkdir()
    # one transfer at a time, in path order: the big file fails in the middle and the pass goes on
    command = sync_command(server, root, "download", "--once", "--no-progress", "--n-par", "1")
    if disk == "full-disk":
        done, why = sync_on_small_disk(command, root, seen)
    else:
        done, why = run(command, preexec_fn=file_size_limit(FILE_SIZE_LIMIT)), TOO_BIG
        seen = root
    assert done.returncode == 1, done.stderr
    big = local_relative_path(keys[1])
    assert failures(done) == {big: f"cannot write {root}/{big}: {why}"}
    assert "transferred 2 files" in done.stdout
    small = {local_relative_path(k): payload(k, sizes[k]) for k in (keys[0], keys[2])}
    assert local_files(seen) == small, "the big file is absent, not half-written; the others are whole"
    assert no_temporaries(seen)


def test_download_into_folders_that_refuse_writes(server: RunningServer, tmp_path: Path) -> None:
    keys = seed(server, "cat", {"A": {f"2024010{i}": ["csv"] for i in range(1, 7)}})
    rel = [local_relative_path(k) for k in keys]
    root = tmp_path / "mirror"
    locked = root / "cat" / "A" / "20240102"
    locked.mkdir(parents=True)
    locked.chmod(0o500)  # no writes for anyone without root's override
    blocker = root / "cat" / "A" / "20240103"
    blocker.write_text("a file where the series folder should be")
    unknown = write_local(root, keys[4], b"bytes nobody can read, so nobody knows whether they matter")
    unknown.chmod(0o000)
    closed = root / "cat" / "A" / "20240106"
    closed.mkdir()
    closed.chmod(0o000)
    done = run(sync_command(server, root, "download", "--once", "--no-progress"), preexec_fn=as_ordinary_user)
    assert done.returncode == 1, done.stderr
    assert failures(done) == {
        rel[1]: f"cannot write {root}/{rel[1]}: permission denied",
        rel[2]: f"cannot create the folder {blocker} for {root}/{rel[2]}: a file of that name is in the way",
        rel[4]: f"cannot read {unknown}: permission denied",
        "cat/A/20240106": f"cannot read the folder {closed}: permission denied; its files were left out of this pass",
    }
    for path in (unknown, closed):
        path.chmod(0o700)
    assert local_files(root) == {
        rel[0]: payload(keys[0]),
        "cat/A/20240103": b"a file where the series folder should be",
        rel[3]: payload(keys[3]),
        rel[4]: b"bytes nobody can read, so nobody knows whether they matter",
    }
    assert no_temporaries(root)
    locked.chmod(0o700)
    blocker.unlink()
    unknown.unlink()
    again = run(sync_command(server, root, "download", "--once", "--no-progress"), preexec_fn=as_ordinary_user)
    assert again.returncode == 0, again.stderr
    assert local_files(root) == {r: payload(k) for r, k in zip(rel, keys, strict=True)}


def test_upload_of_unreadable_files_and_folders(server: RunningServer, tmp_path: Path) -> None:
    server.create_dataset("cat", "A")
    keys = [DistKey("cat", "A", f"2024010{i}", "csv") for i in range(1, 6)]
    rel = [local_relative_path(k) for k in keys]
    older = payload(keys[1], version=1)
    assert server.upload("cat", "A", keys[1].series, "csv", older).status == 200
    assert server.upload("cat", "A", keys[4].series, "csv", payload(keys[4])).status == 200  # only on the server
    root = tmp_path / "pub"
    sizes = dict(zip(keys[:4], (SMALL, 6 * 2**20, 6 * 2**20, SMALL), strict=True))
    paths = [write_local(root, k, payload(k, size)) for k, size in sizes.items()]
    later = time.time() + 2  # edited after the server's version (the listing gives times to the second)
    os.utime(paths[1], (later, later))
    paths[1].chmod(0o000)  # unreadable when the scan hashes it
    paths[3].parent.chmod(0o000)  # a folder that cannot be listed
    check = run(sync_command(server, root, "upload", command="check"), preexec_fn=as_ordinary_user)
    assert check.returncode == 1 and f"! {rel[1]}" in check.stdout, check.stdout + check.stderr
    paths[2].chmod(0o000)  # hashed (by the check), then unreadable when the upload opens it
    done = run(sync_command(server, root, "upload", "--once", "--no-progress", "--delete"), as_ordinary_user)
    assert done.returncode == 1, done.stderr
    assert failures(done) == {
        rel[1]: f"cannot read {root}/{rel[1]}: permission denied",
        rel[2]: f"cannot read {root}/{rel[2]}: permission denied",
        "cat/A/20240104": f"cannot read the folder {root}/cat/A/20240104: permission denied; "
        "its files were left out of this pass",
    }
    assert remote_bytes(server, keys[0]) == payload(keys[0], SMALL)
    assert remote_bytes(server, keys[1]) == older, "an unreadable file neither replaces nor deletes"
    assert remote_bytes(server, keys[2]) is None and remote_bytes(server, keys[3]) is None
    assert remote_bytes(server, keys[4]) == payload(keys[4]), "no delete after a failure in the pass"
    for path in paths:
        path.chmod(0o644)
    paths[3].parent.chmod(0o755)
    again = run(sync_command(server, root, "upload", "--once", "--no-progress", "--delete"), as_ordinary_user)
    assert again.returncode == 0, again.stderr
    assert [remote_bytes(server, k) for k in keys] == [payload(k, size) for k, size in sizes.items()] + [None]
