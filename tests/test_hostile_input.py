"""Hostile and broken answers from a server, and misuse of the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fusionsync import APIError, FusionFileSystem
from tests.liar import LiarServer
from tests.sync_fixtures import sync_once


def listing(*keys: str, size: str = "4") -> bytes:
    rows = [
        {"key": k, "values": ["2024-01-01T00:00:00Z", size, "SHA-256=x", "cat", "D", "s", "csv", "b", "v"]}
        for k in keys
    ]
    return json.dumps({"datasets": [{"key": "D", "lastModified": "x", "distributions": rows}]}).encode()


@pytest.fixture(autouse=True)
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUSIONSYNC_CACHE_DIR", str(tmp_path / "cache"))


HOSTILE_KEYS = [
    "D/../distribution.csv",
    "D/../../distribution.csv",
    "D/../../../../tmp/distribution.csv",
    "D/s/distribution../../../evil",
    "D/s/distribution./etc/passwd",
    "D/s/distribution..",
    "D/s\\..\\..\\x/distribution.csv",
    "D/s\x00x/distribution.csv",
    "D/" + "x" * 300 + "/distribution.csv",
    "/etc/passwd",
    "../D/s/distribution.csv",
    "D//distribution.csv",
    "D/s/distribution.",
]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_names_from_the_server_never_write_outside_the_folder(tmp_path: Path, key: str) -> None:
    with LiarServer(listing(key, "D/20240101/distribution.csv")) as liar:
        fs = FusionFileSystem(credentials=liar.credentials)
        root = tmp_path / "a" / "b" / "mirror"
        root.parent.mkdir(parents=True)  # a download makes its folder, not the folders above it
        report = sync_once(fs, root, tmp_path, datasets=["D"], direction="download")
        fs.close()
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert (
        written == ["a/b/mirror/cat/D/20240101/D__cat__20240101.csv", "fusion_fsync.log"]
        or written == ["a/b/mirror/cat/D/20240101/D__cat__20240101.csv", "cache", "fusion_fsync.log"]
        or all(not w.startswith("a/") or w.startswith("a/b/mirror/cat/D/") for w in written)
    )
    assert any("skipped distribution" in w for w in report.warnings), report.warnings


@pytest.mark.parametrize(
    ("changes", "dataset_meta", "message"),
    [
        (b"<html>not json</html>", b'{"isRawData": false}', "not valid JSON"),
        (b'{"nope": []}', b'{"isRawData": false}', "unexpected answer"),
        (
            b'{"datasets": [{"distributions": [{"key": "D/s/distribution.csv"}]}]}',
            b'{"isRawData": false}',
            "unexpected",
        ),
        (listing("D/s/distribution.csv", size="many"), b'{"isRawData": false}', "unexpected answer"),
        (b'{"datasets": "all"}', b'{"isRawData": false}', "unexpected answer"),
        (listing("D/s/distribution.csv"), b'{"isRawData": "maybe"}', "isRawData"),
        (listing("D/s/distribution.csv"), b"[1, 2]", "isRawData"),
        (json.dumps({"datasets": [{"distributions": [{"key": 7, "values": []}]}]}).encode(), b"{}", "unexpected"),
    ],
)
def test_malformed_answers_are_one_clear_error_naming_the_resource(
    tmp_path: Path, changes: bytes, dataset_meta: bytes, message: str
) -> None:
    # A local file of an unknown extension: its format depends on the dataset's isRawData, so it is asked for.
    folder = tmp_path / "m" / "cat" / "D" / "s"
    folder.mkdir(parents=True)
    (folder / "D__cat__s.xyz").write_bytes(b"x")
    with LiarServer(changes, dataset_meta) as liar:
        fs = FusionFileSystem(credentials=liar.credentials)
        with pytest.raises(APIError, match=message) as err:
            sync_once(fs, tmp_path / "m", tmp_path, datasets=["D"], direction="download")
        fs.close()
    assert "'D'" in str(err.value) or "dataset" in str(err.value)


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusionsync", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FUSIONSYNC_CACHE_DIR": "/nonexistent-never-used"},
    )


@pytest.mark.parametrize(
    "args",
    [
        ["sync"],
        ["sync", "sideways"],
        ["sync", "download", "--n-par", "0"],
        ["sync", "download", "--n-par", "many"],
        ["sync", "download", "--interval", "0"],
        ["sync", "download", "--max-delete", "-1"],
        ["sync", "download", "--log-level", "LOUD"],
        ["sync", "download", "--credentials", "/nonexistent.json", "--dataset", "A"],
        ["sync", "download", "--bogus-option"],
        ["check", "upload", "--n-par", "0"],
        ["ls", "--credentials", "/nonexistent.json"],
        ["serve"],
        ["serve", "--root", "/tmp/x", "--port", "70000"],
        ["serve", "--root", "/tmp/x", "--token-ttl", "864000"],
        ["clients", "add", "x", "--root", "/nonexistent"],
        ["nosuchcommand"],
    ],
)
def test_cli_misuse_is_one_line_and_exit_two(args: list[str]) -> None:
    done = cli(*args)
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr and done.stderr.strip()


def test_bad_credentials_files_are_one_line(tmp_path: Path) -> None:
    for content in ("not json", "[]", '{"client_id": "x"}', '{"grant_type": "bearer"}', '{"grant_type": "magic"}'):
        creds = tmp_path / "creds.json"
        creds.write_text(content)
        done = cli("ls", "--credentials", str(creds))
        assert done.returncode == 3 and done.stderr.startswith("fusionsync: error:"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
