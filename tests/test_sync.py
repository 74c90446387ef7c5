"""The sync engine end to end: a real server, real files, real HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusionsync import DeleteRefused, FusionFileSystem, UsageError
from fusionsync.catalog.layout import DistKey, local_relative_path
from fusionsync.sync.report import SyncReport
from tests.helpers import RunningServer
from tests.sync_fixtures import (
    local_files,
    no_temporaries,
    payload,
    remote_bytes,
    seed,
    sync_once,
    write_local,
)

LAYOUT = {"A": {"20240101": ["csv", "parquet"], "20240102": ["csv"]}, "B": {"20240101": ["csv"]}}


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(path))
    return path


@pytest.fixture
def fs(server: RunningServer) -> Iterator[FusionFileSystem]:
    yield FusionFileSystem(credentials=str(server.credentials_file))


def once(fs: FusionFileSystem, root: Path, **kw: object) -> SyncReport:
    report: SyncReport = sync_once(fs, root, root.parent, **kw)
    return report


def test_download_mirrors_every_distribution_in_the_sdk_layout(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    keys = seed(server, "cat", LAYOUT)
    root = tmp_path / "mirror"
    report = once(fs, root, datasets=["A", "B"], direction="download")
    assert report.ok and len(report.transferred) == len(keys)
    assert local_files(root) == {local_relative_path(k): payload(k) for k in keys}
    assert (root.parent / "fusion_fsync.log").exists()


def test_second_pass_transfers_and_rehashes_nothing(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    seed(server, "cat", LAYOUT)
    root = tmp_path / "mirror"
    once(fs, root, datasets=["A", "B"], direction="download")
    again = once(fs, root, datasets=["A", "B"], direction="download")
    assert again.transferred == [] and again.hashed == 0 and again.skipped == 4
    up = once(fs, root, datasets=["A", "B"], direction="upload")
    assert up.transferred == [] and up.hashed == 0


def test_flatten_and_format_filter(server: RunningServer, fs: FusionFileSystem, tmp_path: Path) -> None:
    seed(server, "cat", LAYOUT)
    root = tmp_path / "flat"
    report = once(fs, root, datasets=["A"], direction="download", flatten=True, dataset_format="csv")
    assert sorted(local_files(root)) == ["cat/A/A__cat__20240101.csv", "cat/A/A__cat__20240102.csv"]
    assert report.ok


def test_products_expand_into_their_datasets(server: RunningServer, fs: FusionFileSystem, tmp_path: Path) -> None:
    seed(server, "cat", LAYOUT)
    server.create_product("cat", "P", ["B"])
    root = tmp_path / "mirror"
    once(fs, root, products=["P"], direction="download")
    assert sorted(local_files(root)) == ["cat/B/20240101/B__cat__20240101.csv"]


def test_upload_publishes_new_and_changed_files_and_skips_bad_names(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    server.create_dataset("cat", "A")
    root = tmp_path / "pub"
    small, big = DistKey("cat", "A", "20240101", "csv"), DistKey("cat", "A", "20240102", "csv")
    write_local(root, small, b"")  # an empty file is a valid distribution
    write_local(root, big, payload(big, 6 * 2**20))
    (root / "cat" / "A" / "notes.txt").write_text("not a distribution")
    report = once(fs, root, datasets=["A"], direction="upload")
    assert report.ok and len(report.transferred) == 2, report.failed
    assert any("notes.txt" in w for w in report.warnings)
    assert remote_bytes(server, small) == b"" and remote_bytes(server, big) == payload(big, 6 * 2**20)
    write_local(root, small, b"changed")
    report = once(fs, root, datasets=["A"], direction="upload")
    assert report.transferred == [local_relative_path(small)] and remote_bytes(server, small) == b"changed"


def test_unknown_extensions_are_format_raw_in_raw_datasets_only(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    server.create_dataset("cat", "RAW", raw=True)
    server.create_dataset("cat", "A")
    root = tmp_path / "pub"
    for dataset in ("RAW", "A"):
        folder = root / "cat" / dataset / "20240101"
        folder.mkdir(parents=True)
        (folder / f"{dataset}__cat__20240101.xyz").write_bytes(b"bytes of an unknown format")
    report = once(fs, root, datasets=["RAW", "A"], direction="upload")
    assert report.ok and len(report.transferred) == 2, report
    assert remote_bytes(server, DistKey("cat", "RAW", "20240101", "raw")) == b"bytes of an unknown format"
    assert remote_bytes(server, DistKey("cat", "RAW", "20240101", "xyz")) is None
    assert remote_bytes(server, DistKey("cat", "A", "20240101", "xyz")) == b"bytes of an unknown format"
    again = once(fs, root, datasets=["RAW", "A"], direction="upload")
    assert again.transferred == [] and again.skipped == 2


def test_dry_run_plans_without_transferring(server: RunningServer, fs: FusionFileSystem, tmp_path: Path) -> None:
    keys = seed(server, "cat", LAYOUT)
    root = tmp_path / "mirror"
    report = once(fs, root, datasets=["A", "B"], direction="download", dry_run=True)
    assert report.dry_run and len(report.transferred) == len(keys)
    assert all(line.startswith("+ ") for line in report.plan_lines)
    assert local_files(root) == {}


def test_local_changes_are_kept_or_backed_up_never_lost(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    (key,) = seed(server, "cat", {"A": {"20240101": ["csv"]}})
    root, backup = tmp_path / "mirror", tmp_path / "backup"
    once(fs, root, datasets=["A"], direction="download")
    path = root / local_relative_path(key)
    path.write_bytes(b"my local edit")
    server.upload("cat", "A", "20240101", "csv", payload(key, version=2))
    kept = once(fs, root, datasets=["A"], direction="download")
    assert not kept.ok and [c.path for c in kept.conflicts] == [local_relative_path(key)]
    assert path.read_bytes() == b"my local edit"
    taken = once(fs, root, datasets=["A"], direction="download", backup_dir=str(backup))
    assert taken.ok and path.read_bytes() == payload(key, version=2)
    assert (backup / local_relative_path(key)).read_bytes() == b"my local edit"


def test_delete_mirrors_and_max_delete_refuses(server: RunningServer, fs: FusionFileSystem, tmp_path: Path) -> None:
    keys = seed(server, "cat", LAYOUT)
    root = tmp_path / "mirror"
    once(fs, root, datasets=["A", "B"], direction="download")
    gone = keys[0]
    path = f"catalogs/cat/datasets/{gone.dataset}/datasetseries/{gone.series}/distributions/{gone.format}"
    assert server.api("DELETE", path).status == 200
    with pytest.raises(DeleteRefused, match="max-delete"):
        once(fs, root, datasets=["A", "B"], direction="download", delete=True, max_delete=0)
    assert (root / local_relative_path(gone)).exists()
    report = once(fs, root, datasets=["A", "B"], direction="download", delete=True, max_delete=1)
    assert report.deleted == [local_relative_path(gone)] and not (root / local_relative_path(gone)).exists()
    (root / "cat" / "A" / "keep-me.txt").write_text("foreign file")
    once(fs, root, datasets=["A", "B"], direction="download", delete=True)
    assert (root / "cat" / "A" / "keep-me.txt").exists()


def test_upload_delete_removes_remote_distributions(
    server: RunningServer, fs: FusionFileSystem, tmp_path: Path
) -> None:
    keys = seed(server, "cat", {"A": {"20240101": ["csv"], "20240102": ["csv"]}})
    root = tmp_path / "pub"
    write_local(root, keys[0], payload(keys[0]))
    report = once(fs, root, datasets=["A"], direction="upload", delete=True)
    assert report.ok and report.deleted and remote_bytes(server, keys[1]) is None
    assert remote_bytes(server, keys[0]) == payload(keys[0])


def test_bad_arguments_are_usage_errors(fs: FusionFileSystem, tmp_path: Path) -> None:
    with pytest.raises(UsageError):
        once(fs, tmp_path, datasets=["A"], direction="sideways")
    with pytest.raises(UsageError):
        once(fs, tmp_path, direction="download")
    with pytest.raises(UsageError):
        once(fs, tmp_path, datasets=["../etc"], direction="download")


def test_report_is_json_serialisable(server: RunningServer, fs: FusionFileSystem, tmp_path: Path) -> None:
    seed(server, "cat", {"A": {"20240101": ["csv"]}})
    report = once(fs, tmp_path / "m", datasets=["A"], direction="download")
    data = json.loads(json.dumps(report.to_dict()))
    assert data["ok"] is True and data["transferred"] == ["cat/A/20240101/A__cat__20240101.csv"]
    assert no_temporaries(tmp_path / "m")
