"""``make bench``: every benchmark in turn (each can also run alone, see bench/README.md)."""

from __future__ import annotations

import subprocess
import sys

BENCHES = ["bench.compare", "bench.client_bench", "bench.ranged_downloads", "bench.load", "bench.sync_latency"]


def main() -> int:
    failed = 0
    for module in BENCHES:
        print(f"== {module}", flush=True)
        args = sys.argv[1:] if module == "bench.compare" else []
        failed += subprocess.run([sys.executable, "-m", module, *args]).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
