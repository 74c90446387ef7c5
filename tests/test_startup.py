"""The command starts quickly: ``--help`` and ``import fusionsync`` load neither the client nor the server."""

from __future__ import annotations

import subprocess
import sys

import fusionsync

HEAVY = ["aiohttp", "fsspec", "fusionsync.client", "fusionsync.server.app", "fusionsync.sync.fsync"]


def test_help_and_the_bare_package_import_neither_client_nor_server() -> None:
    probe = (
        "import sys, runpy\n"
        "sys.argv = ['fusionsync', '--help']\n"
        "try:\n    runpy.run_module('fusionsync', run_name='__main__')\n"
        "except SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "Usage: fusionsync" in out
    assert out.strip().splitlines()[-1] == "[]"


def test_every_public_name_resolves_to_its_home() -> None:
    from fusionsync.client import FusionFileSystem
    from fusionsync.errors import UsageError
    from fusionsync.sync.fsync import fsync

    assert fusionsync.fsync is fsync and fusionsync.FusionFileSystem is FusionFileSystem
    assert fusionsync.UsageError is UsageError
    for name in fusionsync.__all__:
        assert getattr(fusionsync, name) is not None
    assert set(fusionsync.__all__) <= set(dir(fusionsync))
    try:
        fusionsync.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("an unknown name must be an AttributeError")
