"""`fusionsync create/delete catalog|product|dataset` through the API, and the README's quick start run as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import RunningServer

README = Path(__file__).resolve().parents[1] / "README.md"


def cli(server: RunningServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FUSION_CREDENTIALS": str(server.credentials_file)}
    return subprocess.run(
        [sys.executable, "-m", "fusionsync", *args], capture_output=True, text=True, env=env, timeout=60
    )


def one_line_error(result: subprocess.CompletedProcess[str], status: int, *words: str) -> None:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fusionsync: error: "), result.stderr
    assert all(word in lines[0] for word in words), lines[0]


def test_create_and_delete_catalogs_products_and_datasets(server: RunningServer) -> None:
    assert cli(server, "create", "catalog", "cat", "--title", "Cat").returncode == 0
    assert cli(server, "create", "dataset", "cat", "D", "--title", "Dee", "--description", "d").returncode == 0
    assert cli(server, "create", "dataset", "cat", "R", "--raw").returncode == 0
    assert cli(server, "create", "product", "cat", "P", "--dataset", "D", "--dataset", "R").returncode == 0
    assert cli(server, "create", "dataset", "cat", "E", "--product", "P").returncode == 0
    assert server.api("GET", "catalogs/cat").json()["title"] == "Cat"
    dataset = server.api("GET", "catalogs/cat/datasets/D").json()
    assert (dataset["title"], dataset["description"], dataset["isRawData"]) == ("Dee", "d", False)
    assert server.api("GET", "catalogs/cat/datasets/R").json()["isRawData"] is True
    members = cli(server, "ls", "cat/products/P")  # (every page: the fixture's pages hold 2)
    assert members.stdout.split() == ["cat/products/P/D", "cat/products/P/E", "cat/products/P/R"]
    listed = cli(server, "ls", "cat/datasets")
    assert listed.stdout.split() == ["cat/datasets/D", "cat/datasets/E", "cat/datasets/R"]
    one_line_error(cli(server, "delete", "catalog", "cat"), 1, "not empty")
    for args in (("product", "cat", "P"), ("dataset", "cat", "D"), ("dataset", "cat", "E"), ("dataset", "cat", "R")):
        assert cli(server, "delete", *args).returncode == 0, args
    assert server.api("GET", "catalogs/cat/datasets").json()["resources"] == []
    assert cli(server, "delete", "catalog", "cat").returncode == 0
    assert server.api("GET", "catalogs/cat").status == 404


def test_bad_names_exit_2_and_existing_or_missing_objects_exit_1(server: RunningServer) -> None:
    one_line_error(cli(server, "create", "catalog", ".."), 2, "catalog '..'")
    one_line_error(cli(server, "create", "dataset", "cat", "a/b"), 2, "dataset 'a/b'", "'/'")
    one_line_error(cli(server, "create", "product", "cat", "P", "--dataset", ""), 2, "dataset ''", "empty")
    assert server.api("GET", "catalogs").json()["resources"] == []  # nothing was sent
    one_line_error(cli(server, "create", "dataset", "nope", "D"), 1, "not found")
    assert cli(server, "create", "catalog", "cat").returncode == 0
    one_line_error(cli(server, "create", "catalog", "cat"), 1, "already exists")
    assert cli(server, "create", "dataset", "cat", "D").returncode == 0
    one_line_error(cli(server, "create", "dataset", "cat", "D"), 1, "already exists")
    one_line_error(cli(server, "create", "product", "cat", "P", "--dataset", "NOPE"), 1, "'NOPE'", "not found")
    one_line_error(cli(server, "create", "dataset", "cat", "E", "--product", "NOPE"), 1, "'NOPE'", "not found")
    one_line_error(cli(server, "delete", "product", "cat", "NOPE"), 1, "not found")
    one_line_error(cli(server, "delete", "dataset", "cat", "NOPE"), 1, "not found")
    missing = subprocess.run(
        [sys.executable, "-m", "fusionsync", "create", "catalog", "x", "--credentials", "/nonexistent.json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    one_line_error(missing, 2, "credentials file")


def quick_start() -> list[str]:
    """The README's quick-start commands, as written."""
    text = README.read_text(encoding="utf-8")
    section = text.split("### Quick start", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block is not None
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_readme_quick_start_works_as_written(server: RunningServer, tmp_path: Path) -> None:
    lines = quick_start()
    assert lines[0].startswith("fusionsync serve --root ./catalog")  # the fixture's server stands in for it
    (tmp_path / "catalog").symlink_to(server.root)
    script = "set -e\n" + "\n".join(lines[1:])
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.endswith("pair,rate\nEURUSD,1.09\n"), done.stdout
    assert "common/datasets/FX_RATES/datasetseries/20240101" in done.stdout
    assert [m["identifier"] for m in server.api("GET", "catalogs/common/products/FX").json()["resources"]] == [
        "FX_RATES"
    ]
