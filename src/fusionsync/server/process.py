"""Run `fusionsync serve` as a child process on 127.0.0.1 (for the demo, tests and benchmarks)."""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any


class ServerProcess:
    """A `fusionsync serve` child on a free port; ``with ServerProcess(root) as srv: ...``."""

    def __init__(self, root: Path, *args: str, auth: bool = True, port: int = 0, ca_file: Path | None = None) -> None:
        """``ca_file``: the authority of the certificate given with ``--tls-cert`` (to check it is up)."""
        self.root = Path(root)
        self.auth = auth
        self.scheme = "https" if "--tls-cert" in args else "http"
        self.ca_file = ca_file
        self.log = self.root.with_name(self.root.name + ".log")
        self.args = list(args)
        self._cmd = [sys.executable, "-m", "fusionsync", "serve", "--root", str(root), "--port", str(port), *args]
        if not auth:
            self._cmd.append("--no-auth")
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None

    @property
    def base(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def root_url(self) -> str:
        return f"{self.base}/api/v1/"

    @property
    def credentials_file(self) -> Path:
        return self.root / "client_credentials.json"

    def credentials(self) -> dict[str, Any]:
        return dict(json.loads(self.credentials_file.read_text()))

    def start(self, timeout: float = 20) -> ServerProcess:
        self.root.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(self.log, "a") as errors:  # a pipe nobody reads would block the server once full
            self.proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, stderr=errors, text=True, env=env)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("Serving"):
            self.kill()
            raise RuntimeError(f"fusionsync serve did not start: {line}{self.log.read_text()}")
        self.port = int(line.split("127.0.0.1:")[1].split("/")[0])
        deadline = time.monotonic() + timeout
        context = ssl.create_default_context(cafile=self.ca_file) if self.scheme == "https" else None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.root_url + "openapi.json", timeout=2, context=context):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("fusionsync serve did not answer")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGUSR1)  # where it hangs, in its log (faulthandler)
                time.sleep(0.5)
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        """Stop at once (SIGKILL), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.stop()

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
