#!/usr/bin/env python3
"""Instructions per request with each access-log format, under callgrind:
`host -w 0` serving the hello app on 127.0.0.1, N keep-alive GETs after a
warm-up, counters zeroed between (callgrind_control). Instruction counts
are stable across machines and load, unlike timings. Run through
`bench/log-cost` (installs valgrind, builds). Prints a Markdown table.
"""

import http.client
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / "target" / "release" / "host"
HELLO = ROOT / "target" / "release" / "libhello.so"
REQUESTS = int(os.environ.get("LOG_COST_REQUESTS", "2000"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def requests(port: int, count: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    for _ in range(count):
        conn.request("GET", "/hello")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
    conn.close()


def measure(fmt: str, tmp: Path) -> float:
    port = free_port()
    out = tmp / f"callgrind.{fmt}"
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(HOST),
         "-w", "0", "--bind", f"127.0.0.1:{port}", "--no-static",
         "--access-log-format", fmt, f"{HELLO}:application"],
        stdout=subprocess.DEVNULL, stderr=open(tmp / f"stderr.{fmt}", "w"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                requests(port, 1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"host under valgrind did not answer ({fmt})")
                time.sleep(0.2)
        requests(port, 500)  # warm-up: routes proven quick, caches filled
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        requests(port, REQUESTS)
        subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    total = 0
    for dump in tmp.glob(f"callgrind.{fmt}.*"):  # what `-d` dumped (the final dump has no suffix)
        text = dump.read_text(errors="replace")
        match = re.search(r"^(?:summary|totals):\s+(\d+)", text, re.M)
        if match:
            total += int(match.group(1))
    return total / REQUESTS


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="log-cost-") as tmp:
        tmp = Path(tmp)
        results = {fmt: measure(fmt, tmp) for fmt in ["off", "text", "json"]}
    off = results["off"]
    print("| access log | instructions / request | over `off` |")
    print("|---|---|---|")
    for fmt, ir in results.items():
        print(f"| {fmt} | {ir:,.0f} | {ir - off:+,.0f} |")


if __name__ == "__main__":
    sys.exit(main())
