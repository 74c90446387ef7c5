"""FusionFileSystem against curl on the same server: 256 MiB down and up, peak RSS of a 1 GiB download.

Run: ``.venv/bin/python -m bench.client_bench [--size-mib 256] [--rss-mib 1024] [--runs 3]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench.common import MiB, big_file, child_peak_rss_mib, curl_get, curl_put, dist_path, median_time, seeded_server
from fusionsync import FusionFileSystem

RSS_CODE = """
import sys
from fusionsync import FusionFileSystem
FusionFileSystem(credentials=sys.argv[1]).get_file(sys.argv[2], sys.argv[3])
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rss-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        work = Path(tmp)
        rss_file = big_file(work / "rss.bin", args.rss_mib * MiB)
        server = seeded_server(work / "root", rss_file)
        try:
            seconds, peak = child_peak_rss_mib(
                RSS_CODE, str(server.credentials_file), dist_path("bench", "BIG"), str(work / "rss-out.bin")
            )
            print(f"peak RSS downloading {args.rss_mib} MiB: {peak:.0f} MiB ({seconds:.1f} s)")
            src = big_file(work / "src.bin", args.size_mib * MiB)
            fs = FusionFileSystem(credentials=str(server.credentials_file))
            server.create_dataset("bench", "UP")
            ours_up = median_time(lambda: fs.put_file(str(src), dist_path("bench", "UP")), args.runs)
            curl_up = median_time(lambda: curl_put(server, "bench", "UP", src), args.runs)
            out = work / "out.bin"
            ours_down = median_time(lambda: fs.get_file(dist_path("bench", "UP"), str(out)), args.runs)
            curl_down = median_time(lambda: curl_get(server, "bench", "UP", out, verify=False), args.runs)
            curl_down_v = median_time(lambda: curl_get(server, "bench", "UP", out, verify=True), args.runs)
        finally:
            server.stop()
    mb = args.size_mib
    print(f"{'':28} {'fusionsync':>12} {'curl':>12} {'ratio':>8}")
    rows = [
        ("download (verified)", ours_down, curl_down_v),
        ("download (curl unverified)", ours_down, curl_down),
        ("upload", ours_up, curl_up),
    ]
    for name, ours, theirs in rows:
        print(f"{name:28} {mb / ours:9.0f} MiB/s {mb / theirs:7.0f} MiB/s {theirs / ours:7.2f}x")
    print("(ratio = curl time / fusionsync time; above 1 means fusionsync is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
