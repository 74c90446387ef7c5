"""The README tells the truth: its "switch in one line" example runs as written, its exit statuses are the CLI's."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from fusionsync.catalog.layout import local_relative_path
from fusionsync.errors import EXIT_CODES
from tests.helpers import start_server
from tests.sync_fixtures import local_files, payload, seed

README = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")


def section(heading: str) -> str:
    start = README.index(heading)
    end = README.find("\n#", start + len(heading))
    return README[start : end if end != -1 else None]


def test_the_switch_in_one_line_example_runs_as_written(tmp_path: Path) -> None:
    (snippet,) = re.findall(r"```python\n(.*?)```", section("### Switch from the official SDK"), re.S)
    assert "fusion.get_fusion_filesystem()" in snippet and "from fusionsync import fsync" in snippet
    server = start_server(tmp_path / "catalog")  # its credentials file: catalog/client_credentials.json
    try:
        keys = seed(server, "common", {"FX_RATES": {"20240101": ["csv"], "20240102": ["csv"]}})
        assert snippet.count(":8765/") == 1
        runnable = snippet.replace(":8765/", f":{server.port}/")  # the one thing that differs: a free port
        done = subprocess.run(
            [sys.executable, "-c", runnable], cwd=tmp_path, capture_output=True, text=True, timeout=120
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("download: transferred 2 files")
    assert local_files(tmp_path / "mirror") == {local_relative_path(k): payload(k) for k in keys}


def test_the_exit_statuses_in_the_readme_are_the_commands() -> None:
    rows = re.findall(r"^\| (\d+) \| (.+) \|$", section("### Command line"), re.M)
    assert {int(code): text for code, text in rows} == EXIT_CODES
    done = subprocess.run([sys.executable, "-m", "fusionsync", "sync", "--help"], capture_output=True, text=True)
    for code, text in EXIT_CODES.items():
        assert re.search(rf"^\s+{code}\s+{re.escape(text)}$", done.stdout, re.M), (code, done.stdout)
