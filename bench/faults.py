#!/usr/bin/env python3
"""Fault-containment measurements: the figures the tests cannot assert on
a loaded two-core machine (they are timings), taken against the real
`host` on 127.0.0.1, each scenario bounded in time and count. Run it
through `bench/faults`, which installs wrk and builds first.

Scenarios (all by default, or name some):
  crash         10 requests to a segfaulting route, 2 s apart, under 8
                keep-alive clients on a healthy route: the longest the
                healthy route went without an answer, and failures.
  swap          40 SIGHUPs 0.25 s apart under 4 keep-alive + 4 fresh
                clients, GET and POST: failed requests.
  slow-posts    1000 clients sending a POST body at 1 byte/s to one worker:
                latency of normal requests meanwhile, workers replaced,
                what the access log says each slow client got.
  inline-stall  a quick route turns slow (two 3 s calls) with 2 workers:
                latency of other routes meanwhile.
  memory        RSS of master + workers idle, after five floods of 5000
                idle connections, 30 s later, and after 2 million requests.
  slow-bodies   memory a slow request body costs: one connection posting
                20 000 bytes a byte per packet; 500 connections at 1 byte/s
                for 40 s, with --body-min-rate off and on; 500 clients
                reading a response a byte per second.
  truncate      an 8 MiB static file (and an app's file body) cut short in
                place while 4 clients download it at 4 MB/s, 20 rounds per
                transport (HTTP/1.1, HTTPS, h2c, h2): worker deaths.
  stuck-alarms  POST load on the echo app with --timeout 5s for three
                minutes, a route moving between inline and pool calls:
                stuck-call reports and retirements (target 0).
  quarantine    10 crashing requests, each on a new path, 1.5 s apart,
                under load: worker deaths, 503s, the healthy route's
                longest gap.

Standard library only. Prints Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
HOST_BIN = RELEASE / "host"
ECHO = RELEASE / "libecho.so"
FAULTY = RELEASE / "libfaulty.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Host:
    """A `host` process on a free port; its log goes to a file."""

    def __init__(self, args: list[str], env: dict | None = None):
        self.port = free_port()
        self.log_path = Path(tempfile.mkstemp(prefix="faults-", suffix=".log")[1])
        self.log_file = open(self.log_path, "w")
        environment = dict(os.environ, **(env or {}))
        self.proc = subprocess.Popen(
            [str(HOST_BIN), "--bind", f"127.0.0.1:{self.port}", *args],
            stdout=subprocess.PIPE,
            stderr=self.log_file,
            env=environment,
            cwd=ROOT,
        )
        line = self.proc.stdout.readline().decode()
        if not line.startswith("Serving on"):
            raise SystemExit(f"host did not start: {line!r}\n{self.log()}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def tree(self) -> list[int]:
        """The master and its children (workers, probes)."""
        pids = [self.proc.pid]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError):
                    stat = (entry / "stat").read_text()
                    if int(stat.rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                        pids.append(int(entry.name))
        return pids

    def rss_mib(self) -> float:
        total = 0
        for pid in self.tree():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        return total / 1024

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log_file.close()


# ------------------------------------------------------------------ clients


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bool]:
    """Reads one response (Content-Length or chunked); (status, closes)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed before a whole head" if buf else "closed before any response byte")
        buf += data
    head_end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:head_end]).decode("latin-1").lower()
    status = int(head.split(" ", 2)[1])
    closes = "\r\nconnection: close" in head
    length = re.search(r"\r\ncontent-length: *(\d+)", head)
    if length:
        end = head_end + int(length.group(1))
        while len(buf) < end:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed mid-body")
            buf += data
        del buf[:end]
        return status, closes
    if "chunked" in head:
        at = head_end
        while True:
            while b"\r\n" not in buf[at:]:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed mid-chunk")
                buf += data
            line_end = buf.index(b"\r\n", at)
            size = int(bytes(buf[at:line_end]).split(b";")[0], 16)
            at = line_end + 2 + size + 2
            while len(buf) < at:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed mid-chunk")
                buf += data
            if size == 0:
                del buf[:at]
                return status, closes
    del buf[:head_end]
    return status, closes


class Client(threading.Thread):
    """Sends requests until stopped; records (sent, done, status or error)."""

    def __init__(self, port: int, path: str, keep_alive: bool, body: bytes = b"", pause: float = 0.0):
        super().__init__(daemon=True)
        self.port, self.path, self.keep_alive, self.body, self.pause = port, path, keep_alive, body, pause
        self.records: list[tuple[float, float, object]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        sock, buf = None, bytearray()
        method = "POST" if self.body else "GET"
        close = "" if self.keep_alive else "Connection: close\r\n"
        request = (
            f"{method} {self.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{close}Content-Length: {len(self.body)}\r\n\r\n"
        ).encode() + self.body
        while not self.stopping.is_set():
            sent = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
                    buf = bytearray()
                sock.sendall(request)
                status, closes = read_response(sock, buf)
                if closes or not self.keep_alive:
                    sock.close()
                    sock = None
                outcome: object = status
            except (OSError, ValueError) as e:
                outcome = f"{type(e).__name__}: {e}"
                if sock is not None:
                    sock.close()
                sock = None
            self.records.append((sent, time.monotonic(), outcome))
            if self.pause:
                time.sleep(self.pause)
        if sock is not None:
            sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=15)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def one_request(port: int, path: str, timeout: float = 10) -> object:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            return read_response(sock, bytearray())[0]
    except (OSError, ValueError) as e:
        return f"{type(e).__name__}: {e}"


# ---------------------------------------------------------------- scenarios


def crash() -> list[str]:
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "2", "--mount", f"/segv={FAULTY}:segfault"])
    clients = [Client(host.port, "/status/200", keep_alive=True) for _ in range(8)]
    for c in clients:
        c.start()
    time.sleep(1)
    segv = []
    for _ in range(10):
        segv.append(one_request(host.port, "/segv"))
        time.sleep(2)
    for c in clients:
        c.stop()
    host.stop()
    records = sorted(r for c in clients for r in c.records)
    ok_times = sorted(done for _, done, outcome in records if outcome == 200)
    gaps = [b - a for a, b in zip(ok_times, ok_times[1:])]
    failed = sum(1 for _, _, outcome in records if outcome != 200)
    deaths = host.log().count(" died: ")
    return [
        "### crash: 10 × /segv, 2 s apart, under 8 keep-alive clients on /status/200 (2 workers)",
        "",
        f"- /segv answers: {segv}",
        f"- worker deaths: {deaths}; quarantined: {'yes' if 'quarantine: ' in host.log() else 'no'}",
        f"- healthy requests: {len(records)}, failed: {failed} (only those in flight on a dying worker may)",
        f"- longest time without a healthy answer: **{max(gaps) * 1e3:.0f} ms** (target ≤ 500 ms)",
        "",
    ]


def swap() -> list[str]:
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "2"])
    clients = [Client(host.port, "/", keep_alive=True) for _ in range(2)]
    clients += [Client(host.port, "/", keep_alive=True, body=b"a=1&b=2") for _ in range(2)]
    clients += [Client(host.port, "/", keep_alive=False) for _ in range(2)]
    clients += [Client(host.port, "/", keep_alive=False, body=b"a=1&b=2") for _ in range(2)]
    for c in clients:
        c.start()
    time.sleep(0.5)
    for _ in range(40):
        host.signal(signal.SIGHUP)
        time.sleep(0.25)
    time.sleep(3)
    for c in clients:
        c.stop()
    host.stop()
    records = [r for c in clients for r in c.records]
    failed = [r for r in records if r[2] != 200]
    generations = host.log().count(" serving, ")
    return [
        "### swap: 40 SIGHUPs 0.25 s apart, 4 keep-alive + 4 fresh clients, GET and POST (2 workers)",
        "",
        f"- requests: {len(records)}, **failed: {len(failed)}** (target 0); new generations: {generations}",
        *[f"  - {r[2]}" for r in failed[:5]],
        "",
    ]


async def slow_post(port: int, body: bytes, results: list, stop: asyncio.Event) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        for byte in body:
            if stop.is_set():
                break
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(1)
        line = await asyncio.wait_for(reader.readline(), 30)
        results.append(int(line.split()[1]) if line else "closed")
        writer.close()
    except Exception as e:  # noqa: BLE001 - every outcome is a result
        results.append(type(e).__name__)


def slow_posts(count: int = 1000) -> list[str]:
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "1"])
    body = b"x" * 20  # 20 s at 1 byte/s
    latencies: list[float] = []
    failed = []

    async def main() -> list:
        results: list = []
        stop = asyncio.Event()
        tasks = [asyncio.create_task(slow_post(host.port, body, results, stop)) for _ in range(count)]
        await asyncio.sleep(2)
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            started = time.monotonic()
            outcome = await loop.run_in_executor(None, one_request, host.port, "/status/200")
            latencies.append(time.monotonic() - started)
            if outcome != 200:
                failed.append(outcome)
            await asyncio.sleep(0.02)
        await asyncio.wait(tasks, timeout=60)
        return results

    results = asyncio.run(main())
    replaced = host.log().count("retires")
    host.stop()
    log = host.log()
    statuses: dict = {}
    for r in results:
        statuses[r] = statuses.get(r, 0) + 1
    logged = len(re.findall(r'"POST / HTTP/1.1" 200', log))
    return [
        f"### slow-posts: {count} clients sending a 20-byte POST body at 1 byte/s (1 worker)",
        "",
        f"- normal requests meanwhile: {len(latencies)}, failed {len(failed)}; "
        f"p50 {percentile(latencies, 50) * 1e3:.1f} ms, **p99 {percentile(latencies, 99) * 1e3:.1f} ms** (target < 50 ms)",
        f"- workers replaced: {replaced} (target 0)",
        f"- slow clients got: {statuses}; access log lines for them with 200: {logged}",
        "",
    ]


def inline_stall() -> list[str]:
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "2"])
    for _ in range(40):
        one_request(host.port, "/mixed")
    probe = [Client(host.port, "/status/200", keep_alive=False, pause=0.005) for _ in range(4)]
    for c in probe:
        c.start()
    time.sleep(1)
    before = time.monotonic()
    slow = [threading.Thread(target=one_request, args=(host.port, "/mixed?sleep=3000")) for _ in range(2)]
    for t in slow:
        t.start()
    for t in slow:
        t.join()
    after = time.monotonic()
    time.sleep(0.5)
    for c in probe:
        c.stop()
    host.stop()
    during = [done - sent for c in probe for sent, done, outcome in c.records if sent >= before and sent < after]
    failed = sum(1 for c in probe for r in c.records if r[2] != 200)
    return [
        "### inline-stall: two 3 s calls on a route that was quick (inline), 2 workers, 4 clients (fresh connections) on another route",
        "",
        f"- other-route requests during the slow calls: {len(during)}, failed {failed}; "
        f"p50 {percentile(during, 50) * 1e3:.1f} ms, **p99 {percentile(during, 99) * 1e3:.1f} ms**, "
        f"max {max(during, default=0) * 1e3:.0f} ms (target p99 < 50 ms)",
        "",
    ]


async def flood(port: int, count: int) -> int:
    writers = []
    for _ in range(count):
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writers.append(writer)
    await asyncio.sleep(2)
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.5)
    return len(writers)


def memory() -> list[str]:
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "2", "--access-log-format", "off"])
    time.sleep(1)
    idle = host.rss_mib()
    rows = [f"- idle: {idle:.1f} MiB"]
    for i in range(5):
        opened = asyncio.run(flood(host.port, 5000))
        rows.append(f"- after flood {i + 1} ({opened} connections): {host.rss_mib():.1f} MiB")
    time.sleep(30)
    settled = host.rss_mib()
    rows.append(f"- 30 s after the last flood: **{settled:.1f} MiB** ({settled / idle:.2f}× idle; target ≤ 2×)")
    if shutil.which("wrk"):
        for round_ in range(2):
            subprocess.run(
                ["wrk", "-t1", "-c32", "-d20s", f"http://127.0.0.1:{host.port}/status/200"],
                capture_output=True,
                check=False,
            )
            rows.append(f"- after wrk round {round_ + 1} (about 1 M requests each): {host.rss_mib():.1f} MiB")
    else:
        rows.append("- wrk not installed: no request rounds (bench/faults installs it)")
    host.stop()
    return ["### memory: RSS of master + 2 workers", "", *rows, ""]


def worker_rss_kib(host: Host) -> int:
    """RSS of the workers (not the master), KiB."""
    total = 0
    for pid in host.tree()[1:]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


async def trickle(port: int, body_len: int, pause: float, results: list) -> None:
    """A POST whose body goes a byte per packet, `pause` apart."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        writer.write(
            f"POST /x HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {body_len}\r\n\r\n".encode()
        )
        for _ in range(body_len):
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(pause)
        line = await asyncio.wait_for(reader.readline(), 60)
        results.append(int(line.split()[1]) if line else "closed")
        writer.close()
    except Exception as e:  # noqa: BLE001 - every outcome is a result
        results.append(type(e).__name__)


async def slow_reader(port: int, results: list, seconds: float) -> None:
    """Asks for 1 MB and reads it a byte a second."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        writer.write(b"GET /big/1000000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not await reader.read(1):
                break
            await asyncio.sleep(1)
        results.append("read")
        writer.close()
    except Exception as e:  # noqa: BLE001 - every outcome is a result
        results.append(type(e).__name__)


def slow_bodies() -> list[str]:
    rows = []
    # One connection, 20 000 bytes a byte per packet, 1 ms apart.
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "1", "--access-log-format", "off"])
    time.sleep(1)
    idle = worker_rss_kib(host)
    results: list = []
    peak = 0

    async def one() -> None:
        nonlocal peak
        task = asyncio.create_task(trickle(host.port, 20_000, 0.001, results))
        while not task.done():
            peak = max(peak, worker_rss_kib(host))
            await asyncio.sleep(0.2)

    asyncio.run(one())
    after = worker_rss_kib(host)
    host.stop()
    rows.append(
        f"- one connection, 20 000 bytes a byte per packet: worker RSS idle {idle / 1024:.1f} MiB, "
        f"peak **+{(peak - idle) / 1024:.2f} MiB** ({(peak - idle) * 1024 / 20_000:.0f} bytes per body byte; "
        f"target ≤ 1.3 MB), after the response +{(after - idle) / 1024:.2f} MiB; answer {results}"
    )
    # 500 connections at 1 byte/s, without and with the minimum rate.
    for min_rate in ["0", "500"]:
        host = Host(
            [f"{ECHO}:application", "--no-static", "--workers", "1", "--body-min-rate", min_rate, "--access-log-format", "off"]
        )
        time.sleep(1)
        idle = worker_rss_kib(host)
        samples = []
        results = []

        async def many() -> None:
            tasks = [asyncio.create_task(trickle(host.port, 60, 1.0, results)) for _ in range(500)]
            for _ in range(5):
                samples.append(worker_rss_kib(host) - idle)
                await asyncio.sleep(10)
            await asyncio.wait(tasks, timeout=40)

        asyncio.run(many())
        time.sleep(6)  # the heap trim after a flood
        settled = worker_rss_kib(host) - idle
        host.stop()
        statuses: dict = {}
        for r in results:
            statuses[r] = statuses.get(r, 0) + 1
        growth = ", ".join(f"{s / 1024:.1f}" for s in samples)
        rows.append(
            f"- 500 connections at 1 byte/s, --body-min-rate {min_rate}: worker RSS growth at 0/10/20/30/40 s: "
            f"**{growth} MiB** (target < 20 MB); {settled / 1024:.1f} MiB after; the clients got {statuses}"
        )
    # 500 clients reading a 1 MB response a byte per second.
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "1", "--access-log-format", "off"])
    time.sleep(1)
    idle = worker_rss_kib(host)
    results = []
    samples = []

    async def readers() -> None:
        tasks = [asyncio.create_task(slow_reader(host.port, results, 20)) for _ in range(500)]
        for _ in range(3):
            await asyncio.sleep(7)
            samples.append(worker_rss_kib(host) - idle)
        await asyncio.wait(tasks, timeout=30)

    asyncio.run(readers())
    host.stop()
    rows.append(
        f"- 500 clients reading a 1 MB response a byte per second: worker RSS growth at 7/14/21 s: "
        + ", ".join(f"{s / 1024:.1f}" for s in samples)
        + " MiB"
    )
    return ["### slow-bodies: memory per slow client (1 worker)", "", *rows, ""]


def make_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost (openssl)."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-days", "2", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


def truncate(rounds: int = 20) -> list[str]:
    folder = Path(tempfile.mkdtemp(prefix="faults-truncate-"))
    site = folder / "site"
    site.mkdir()
    big = site / "big.bin"
    content = os.urandom(8 << 20)
    cert, key = make_cert(folder)
    common = ["--workers", "1", "--static-dir", str(site), "--mount", f"/app={RELEASE / 'libstatic_app.so'}:run"]
    env = {"STATIC_APP_ROOT": str(site)}
    plain = Host(common, env)
    tls = Host([*common, "--certfile", str(cert), "--keyfile", str(key)], env)
    transports = [("HTTP/1.1", plain, "http", "--http1.1"), ("h2c", plain, "http", "--http2-prior-knowledge"),
                  ("HTTPS", tls, "https", "--http1.1"), ("h2 over TLS", tls, "https", "--http2")]
    rows = []
    for name, host, scheme, how in transports:
        deaths_before = host.log().count(" died: ")
        for path in ["/big.bin", "/app/big.bin"]:
            for _ in range(rounds):
                big.write_bytes(content)
                url = f"{scheme}://localhost:{host.port}{path}"
                curls = [
                    subprocess.Popen(
                        ["curl", "-s", "-o", "/dev/null", "--limit-rate", "4M", "--max-time", "20", "--cacert", str(cert),
                         "--resolve", f"localhost:{host.port}:127.0.0.1", how, url])
                    for _ in range(4)
                ]
                time.sleep(0.3)
                with open(big, "r+b") as f:
                    f.truncate(1000)
                for c in curls:
                    c.wait()
        rows.append(f"- {name}: {rounds} rounds each of the static file and the app's file body, "
                    f"**{host.log().count(' died: ') - deaths_before} worker deaths** (target 0)")
    plain.stop()
    tls.stop()
    shutil.rmtree(folder, ignore_errors=True)
    return ["### truncate: an 8 MiB file cut short in place under 4 downloads at 4 MB/s (1 worker)", "", *rows, ""]


def stuck_alarms(seconds: int = 180) -> list[str]:
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "2", "--timeout", "5s",
                 "--admin-bind", f"127.0.0.1:{(admin := free_port())}"])
    body = "x" * 1024
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(f'wrk.method = "POST"\nwrk.body = "{body}"\n')
    # A route that moves between inline and the pool: mostly quick, now and
    # then a 20 ms sleep.
    mover = Client(host.port, "/mixed", keep_alive=True)
    slow = Client(host.port, "/mixed?sleep=20", keep_alive=True, pause=0.5)
    mover.start()
    slow.start()
    subprocess.run(["wrk", "-t2", "-c64", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{host.port}/echo/x"],
                   capture_output=True, check=False)
    mover.stop()
    slow.stop()
    metrics = one_request_text(admin, "/metrics")
    host.stop()
    log = host.log()
    stuck = log.count("is still inside the app")
    retired = log.count(" retires: ")
    counted = re.search(r"^host_stuck_calls_total (\d+)", metrics, re.M)
    return [
        f"### stuck-alarms: {seconds} s of wrk POSTing 1 KiB (-c64) with --timeout 5s, a route moving inline ↔ pool (2 workers)",
        "",
        f"- stuck-call reports in the log: **{stuck}**, retirements: **{retired}** (target 0 and 0); "
        f"host_stuck_calls_total: {counted.group(1) if counted else '?'}",
        "",
    ]


def one_request_text(port: int, path: str) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")


def quarantine() -> list[str]:
    host = Host([f"{ECHO}:application", "--no-static", "--workers", "2", "--mount", f"/f={FAULTY}:segfault"])
    clients = [Client(host.port, "/status/200", keep_alive=True) for _ in range(8)]
    for c in clients:
        c.start()
    time.sleep(1)
    answers = []
    for n in range(1, 11):
        answers.append(one_request(host.port, f"/f/{n}"))
        time.sleep(1.5)
    for c in clients:
        c.stop()
    host.stop()
    records = sorted(r for c in clients for r in c.records)
    ok_times = sorted(done for _, done, outcome in records if outcome == 200)
    gaps = [b - a for a, b in zip(ok_times, ok_times[1:])]
    deaths = host.log().count(" died: ")
    return [
        "### quarantine: 10 crashing requests on /f/1 … /f/10, 1.5 s apart, under 8 keep-alive clients (2 workers)",
        "",
        f"- answers: {answers}",
        f"- worker deaths: **{deaths}** (target ≤ 3 = --quarantine-after), then 503s",
        f"- longest time without a healthy answer: **{max(gaps) * 1e3:.0f} ms** (target < 500 ms)",
        "",
    ]


SCENARIOS = {
    "crash": crash,
    "swap": swap,
    "slow-posts": slow_posts,
    "inline-stall": inline_stall,
    "memory": memory,
    "slow-bodies": slow_bodies,
    "truncate": truncate,
    "stuck-alarms": stuck_alarms,
    "quarantine": quarantine,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", choices=[*SCENARIOS, []], help="default: all")
    args = parser.parse_args()
    for name in args.scenarios or SCENARIOS:
        started = time.monotonic()
        lines = SCENARIOS[name]()
        print("\n".join(lines), flush=True)
        print(f"({name}: {time.monotonic() - started:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
