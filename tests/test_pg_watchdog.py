"""The tests' PostgreSQL (tests/pg.py) does not outlive a test run that was killed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HOLDER = """
import sys, time
from tests.pg import postgres_server
with postgres_server() as url:
    print(url, flush=True)
    time.sleep(600)
"""


def test_a_killed_test_process_leaves_no_postgresql_behind() -> None:
    repo = Path(__file__).resolve().parents[1]
    with subprocess.Popen([sys.executable, "-c", HOLDER], cwd=repo, stdout=subprocess.PIPE, text=True) as holder:
        assert holder.stdout is not None
        url = holder.stdout.readline().strip()
        port = int(url.rsplit(":", 1)[1])
        socket.create_connection(("127.0.0.1", port), timeout=5).close()  # it runs
        os.kill(holder.pid, signal.SIGKILL)  # no finally, no fixture teardown
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"PostgreSQL on port {port} still runs after its test process was killed")
