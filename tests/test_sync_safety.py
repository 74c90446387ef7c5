"""Nothing is lost on either side: remote changes, deletes from a missing or empty source, backups,
long and unusual names, skipped files, the lock, and silent corruption."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionsync import DeleteRefused, FusionFileSystem, LockedError, UsageError
from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.sync.cache import HashCache, RootLock
from fusionsync.sync.report import SyncReport
from tests.helpers import RunningServer
from tests.sync_fixtures import local_files, payload, remote_bytes, seed, sync_once, write_local


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def fs(server: RunningServer) -> Iterator[FusionFileSystem]:
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    yield fs
    fs.close()


def once(fs: FusionFileSystem, root: Path, **kw: object) -> SyncReport:
    kw.setdefault("datasets", ["A"])
    report: SyncReport = sync_once(fs, root, root.parent, **kw)
    return report


def listed(server: RunningServer, dataset: str = "A") -> dict[str, str]:
    """Series → digest of the dataset's csv distributions, as the server lists them."""
    data = server.api("GET", f"catalogs/cat/datasets/changes?datasets={dataset}").json()["datasets"]
    rows = data[0]["distributions"] if data else []
    return {row["values"][5]: row["values"][2] for row in rows}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusionsync", *args], capture_output=True, text=True, timeout=120)


def test_an_upload_never_overwrites_a_remote_version_changed_since_the_last_sync(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root, path = tmp_path / "pub", local_relative_path(key)
    once(fs, root, direction="download")
    assert server.upload("cat", "A", key.series, "csv", payload(key, version=2)).status == 200  # another client
    kept = once(fs, root, direction="upload")
    assert kept.transferred == [] and [(c.path, c.reason) for c in kept.conflicts] == [
        (
            path,
            "changed on the server, not here, since the last sync; the server's version is kept "
            "(download it first, with a backup folder to keep this copy)",
        )
    ]
    assert remote_bytes(server, key) == payload(key, version=2)
    (root / path).write_bytes(b"my edit")  # both changed: still the server's version stays
    both = once(fs, root, direction="upload")
    assert both.transferred == [] and both.conflicts[0].reason.startswith("changed both here and on the server")
    assert remote_bytes(server, key) == payload(key, version=2)
    backup = tmp_path / "backup"
    assert once(fs, root, direction="download", backup_dir=str(backup)).ok
    (root / path).write_bytes((backup / path).read_bytes())  # the edit, put back on top of the server's version
    sent = once(fs, root, direction="upload")
    assert sent.ok and sent.transferred == [path] and remote_bytes(server, key) == b"my edit"


def test_an_upload_delete_spares_a_remote_version_changed_since_the_last_sync(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    keys = seed(server, "cat", {"A": {"20240101": ["csv"], "20240102": ["csv"]}})
    root = tmp_path / "pub"
    once(fs, root, direction="download")
    for key in keys:
        (root / local_relative_path(key)).unlink()
    write_local(root, DistKey("cat", "A", "20240103", "csv"), b"new")
    assert server.upload("cat", "A", keys[0].series, "csv", payload(keys[0], version=2)).status == 200
    report = once(fs, root, direction="upload", delete=True)
    assert [c.path for c in report.conflicts] == [keys[0].remote_path] and report.deleted == [keys[1].remote_path]
    assert remote_bytes(server, keys[0]) == payload(keys[0], version=2) and remote_bytes(server, keys[1]) is None


def test_an_upload_from_a_missing_folder_is_refused_and_deletes_nothing(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"], "20240102": ["csv"]}})
    with pytest.raises(UsageError, match=r"^the local folder .*/typo does not exist, so there is nothing to upload"):
        once(fs, tmp_path / "typo", direction="upload", delete=True)
    args = ["sync", "upload", "--local-path", str(tmp_path / "typo"), "--catalog", "cat", "--dataset", "A"]
    done = cli(*args, "--delete", "--once", "--credentials", str(server.credentials_file), "--log-path", str(tmp_path))
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1 and "does not exist" in done.stderr
    assert len(listed(server)) == 2


def test_a_download_makes_its_folder_but_not_a_missing_parent(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    """rsync's rule: a mistyped --local-path /mnt/dta/mirror is an error, not a new tree somewhere unexpected."""
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    mistyped = tmp_path / "mnt" / "dta" / "mirror"
    message = (
        f"the folder {mistyped.parent} does not exist, so the local folder {mistyped} cannot be made in it; "
        "nothing was done (create the parent folder first)"
    )
    with pytest.raises(UsageError) as refused:
        sync_once(fs, mistyped, tmp_path, datasets=["A"], direction="download")
    assert str(refused.value) == message
    args = ["sync", "download", "--local-path", str(mistyped), "--catalog", "cat", "--dataset", "A", "--once"]
    done = cli(*args, "--credentials", str(server.credentials_file), "--log-path", str(tmp_path))
    assert done.returncode == 2 and done.stdout == "" and done.stderr.splitlines() == [f"fusionsync: error: {message}"]
    assert not (tmp_path / "mnt").exists()
    assert once(fs, tmp_path / "new", direction="download").ok, "the last component is made"
    assert local_files(tmp_path / "new") == {local_relative_path(key): payload(key)}


def test_emptying_a_dataset_needs_to_be_asked_for(server: RunningServer, fs: FusionFileSystem, tmp_path: Path) -> None:
    keys = seed(server, "cat", {"A": {"20240101": ["csv"], "20240102": ["csv"]}, "B": {"20240101": ["csv"]}})
    empty = tmp_path / "empty"
    write_local(empty, DistKey("cat", "B", "20240101", "csv"), payload(keys[2]))  # B is there, A's folder is empty
    with pytest.raises(DeleteRefused, match="would delete all 2 distributions of dataset 'A' on the server"):
        once(fs, empty, datasets=["A", "B"], direction="upload", delete=True)
    assert len(listed(server)) == 2
    args = ["sync", "upload", "--local-path", str(empty), "--catalog", "cat", "--dataset", "A", "--dataset", "B"]
    args += ["--delete", "--once", "--credentials", str(server.credentials_file), "--log-path", str(tmp_path)]
    refused = cli(*args)
    assert refused.returncode == 5 and "--allow-delete-all" in refused.stderr and len(listed(server)) == 2
    with pytest.raises(DeleteRefused, match="more than --max-delete 1"):  # a limit below what it would delete
        once(fs, empty, datasets=["A", "B"], direction="upload", delete=True, max_delete=1)
    allowed = cli(*args, "--allow-delete-all", "--json")
    assert allowed.returncode == 0, allowed.stderr
    assert sorted(json.loads(allowed.stdout)["deleted"]) == sorted(k.remote_path for k in keys[:2])
    assert listed(server) == {} and len(listed(server, "B")) == 1

    mirror = tmp_path / "mirror"  # downloads: a dataset the server lists nothing of
    (key,) = seed(server, "cat", {"A": {"20240105": ["csv"]}})
    once(fs, mirror, direction="download")
    assert server.api("DELETE", key.remote_path.replace("cat/", "catalogs/cat/", 1)).status == 200
    with pytest.raises(DeleteRefused, match="since the server lists none"):
        once(fs, mirror, direction="download", delete=True)
    assert once(fs, mirror, direction="download", delete=True, max_delete=1).deleted == [local_relative_path(key)]


def test_backups_never_overwrite_an_earlier_backup_and_are_reported(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root, backup, path = tmp_path / "mirror", tmp_path / "backup", local_relative_path(key)
    once(fs, root, direction="download")
    for version in (1, 2):
        (root / path).write_bytes(f"edit {version}".encode())
        assert server.upload("cat", "A", key.series, "csv", payload(key, version=version)).status == 200
        report = once(fs, root, direction="download", backup_dir=str(backup))
        assert report.ok and (root / path).read_bytes() == payload(key, version=version)
        name = str(backup / path) + ("" if version == 1 else ".1")
        assert [(b.path, b.backup) for b in report.backups] == [(path, name)]
        assert json.loads(json.dumps(report.to_dict()))["backups"] == [{"path": path, "backup": name}]
    assert (backup / path).read_bytes() == b"edit 1" and Path(f"{backup / path}.1").read_bytes() == b"edit 2"


def test_a_file_name_of_255_bytes_downloads_and_uploads(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    dataset = "D" * (255 - len("__cat__20240101.csv"))
    (key,) = seed(server, "cat", {dataset: {"20240101": ["csv"]}}, size=3 * 2**20)  # above the one-GET size
    root = tmp_path / "mirror"
    report = once(fs, root, datasets=[dataset], direction="download")
    assert report.ok, report.failed
    assert len(local_relative_path(key).rsplit("/", 1)[1].encode()) == 255
    assert local_files(root) == {local_relative_path(key): payload(key, 3 * 2**20)}
    (root / local_relative_path(key)).write_bytes(b"edited")
    assert once(fs, root, datasets=[dataset], direction="upload").transferred == [local_relative_path(key)]
    assert remote_bytes(server, key) == b"edited"


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
@pytest.mark.parametrize("flatten", [False, True])
def test_series_with_spaces_and_accents_round_trip_as_the_sdk_names_them(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path, flatten: bool
) -> None:
    from fusion.utils import distribution_to_filename

    series = ["2024 0105", "été-2024", "20240107"]
    keys = seed(server, "cat", {"A": {s: ["csv"] for s in series}})
    root = tmp_path / "mirror"
    assert once(fs, root, direction="download", flatten=flatten).ok
    sdk_names = {s: distribution_to_filename("", "A", s, "csv", "cat").lstrip("/") for s in series}
    assert sdk_names["2024 0105"] == "A__cat__2024_0105.csv" and sdk_names["été-2024"] == "A__cat___t_-2024.csv"
    assert sorted(local_files(root)) == sorted(
        f"cat/A/{name}" if flatten else f"cat/A/{s}/{name}" for s, name in sdk_names.items()
    )
    before = listed(server)
    for key in keys:
        (root / local_relative_path(key, flatten)).write_bytes(f"edited {key.series}".encode())
    report = once(fs, root, direction="upload")
    assert report.ok and len(report.transferred) == 3, report
    assert set(listed(server)) == set(before) == set(series), "no new series such as 2024_0105"
    assert all(remote_bytes(server, k) == f"edited {k.series}".encode() for k in keys)


def test_every_skipped_local_file_is_named_in_a_warning(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    server.create_dataset("cat", "A")
    root = tmp_path / "pub"
    write_local(root, DistKey("cat", "A", "20240101", "csv"), b"sent")
    elsewhere = tmp_path / "elsewhere.csv"
    elsewhere.write_bytes(b"not followed")
    link = root / "cat/A/20240102/A__cat__20240102.csv"
    link.parent.mkdir()
    link.symlink_to(elsewhere)
    write_local(root, DistKey("other", "A", "20240103", "csv"), b"x")  # other/A/...: not scanned at all
    misplaced = [DistKey("other", "A", "20240104", "csv"), DistKey("cat", "B", "20240105", "csv")]
    for key in misplaced:
        write_local(root / "cat" / "A" / "x", key, b"x", flatten=True)  # named for another catalog / dataset
    report = once(fs, root, direction="upload")
    assert report.transferred == ["cat/A/20240101/A__cat__20240101.csv"]
    assert sorted(report.warnings) == [
        "cat/A/20240102/A__cat__20240102.csv: a symbolic link, which a sync does not follow, so it is skipped",
        "cat/A/x/cat/B/B__cat__20240105.csv: named for dataset 'B', which this sync does not include, so it is skipped",
        "cat/A/x/other/A/A__other__20240104.csv: named for catalog 'other', not 'cat', so it is skipped",
    ]


def test_the_lock_holds_for_every_alias_of_a_folder(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"]}})
    real = tmp_path / "real"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    cache = HashCache.for_root(f"file://{real}")  # what a sync running on the real path holds
    lock = RootLock(cache.path)
    lock.acquire(str(real))
    try:
        with pytest.raises(LockedError, match=f"another sync is already running on {real}$"):
            once(fs, alias, direction="download")
    finally:
        lock.release()
        cache.close()
    assert once(fs, alias, direction="download").ok and local_files(real)


def test_check_with_checksum_finds_a_flipped_byte_whose_time_was_restored(
    server: RunningServer, tmp_path: Path
) -> None:
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root = tmp_path / "mirror"
    fs = FusionFileSystem(credentials=str(server.credentials_file))
    assert once(fs, root, direction="download").ok
    fs.close()
    args = ["download", "--local-path", str(root), "--catalog", "cat", "--dataset", "A"]
    args += ["--credentials", str(server.credentials_file), "--log-path", str(tmp_path)]
    path = root / local_relative_path(key)
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    trusting = cli("check", *args)
    assert trusting.returncode == 0, trusting.stdout  # size and time unchanged: a plain check cannot see it
    found = cli("check", *args, "--checksum")
    assert found.returncode == 1 and found.stdout.startswith(f"! {local_relative_path(key)}\n"), found.stdout
    assert "its content changed although its size and modification time did not" in found.stderr
