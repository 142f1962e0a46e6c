#!/usr/bin/env python3
"""Benchmark harness: the `host` application server against a plain hyper
server (`baseline`) and nginx.

Throughput and latency come from wrk (one thread, so it uses one core and
leaves the rest to the server), server CPU from /proc (the server's process
and all its descendants), idle memory from VmRSS, and instructions per
request from callgrind. The results are printed as Markdown and written to
--out. Run it through `bench/run`, which installs the tools and builds first.

Standard library only; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h2load

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
HOST_BIN = RELEASE / "host"
BASELINE_BIN = RELEASE / "baseline"
BENCH_APPS = RELEASE / "libbench_apps.so"
BENCH_C_HELLO = ROOT / "target" / "c-apps" / "libbench_hello_c.so"  # `make c-apps`
CTIME_APP = ROOT / "plugins" / "libctime.so"
NGINX_BIN = Path("/usr/sbin/nginx")
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.md"

NPROC = os.cpu_count() or 1
CLK_TCK = os.sysconf("SC_CLK_TCK")
CONNECTIONS = (32, 256)

READY_TIMEOUT = 20.0  # seconds for a server to start answering
STOP_TIMEOUT = 5.0  # seconds between SIGTERM and SIGKILL
WRK_GRACE = 30.0  # seconds a wrk run may overrun its -d before it counts as hung
HTTP_TIMEOUT = 5.0  # seconds for one readiness / callgrind request
IDLE_SETTLE = 1.0  # seconds a server idles before its RSS is read
RSS_TARGET_MIB = 15.0
IR_TARGET = 14_000  # instructions per /hello, access log off
IR_TEXT_LOG_TARGET = 15_000  # the same with the default text log
CALLGRIND_READY_TIMEOUT = 60.0
CALLGRIND_STOP_TIMEOUT = 60.0
CALLGRIND_COUNTS = (200, 2200)  # instructions/request = difference / 2000

# wrk's reporter: one JSON line with the run's totals.
WRK_REPORTER_LUA = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, '
      .. '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, '
      .. '"p50_us": %.1f, "p99_us": %.1f}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""

NGINX_CONF = """\
daemon off;
master_process on;
worker_processes {workers};
error_log {tmp}/nginx-error.log;
pid {tmp}/nginx.pid;
{user}
events {{
    worker_connections 4096;
}}

http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 65;
    default_type application/octet-stream;
    client_body_temp_path {tmp}/nginx-temp/body;
    proxy_temp_path {tmp}/nginx-temp/proxy;
    fastcgi_temp_path {tmp}/nginx-temp/fastcgi;
    uwsgi_temp_path {tmp}/nginx-temp/uwsgi;
    scgi_temp_path {tmp}/nginx-temp/scgi;

    server {{
        listen 127.0.0.1:{port}{listen_options};
        root {site};
{server_extra}    }}
}}
"""


class BenchError(Exception):
    """A failure that ends the run with a clear message and exit code 1."""


class Interrupted(BaseException):
    """SIGTERM to the harness: unwinds like Ctrl-C so servers get stopped."""


# --------------------------------------------------------------------------
# What runs: servers and workloads


@dataclass(frozen=True)
class ServerSpec:
    """One server configuration; `kind` picks the command line."""

    name: str
    kind: str  # "baseline", "host", "host-c" (hello from the C interface), "host-text-log" or "nginx"
    workers: int | None = None  # None: the baseline (one process, all cores)


BASELINE = ServerSpec("baseline", "baseline")
HOST_1 = ServerSpec("host-1", "host", 1)
HOST_N = ServerSpec("host-N", "host", NPROC)
NGINX_1 = ServerSpec("nginx-1", "nginx", 1)
NGINX_N = ServerSpec("nginx-N", "nginx", NPROC)
SERVERS = (BASELINE, HOST_1, HOST_N, NGINX_1, NGINX_N)  # the order they run in

APP_SERVERS = (BASELINE, HOST_1, HOST_N)
STATIC_SERVERS = (NGINX_1, NGINX_N, HOST_1, HOST_N, BASELINE)


@dataclass(frozen=True)
class Workload:
    """A URL path, the servers that run it, and the host rows' target."""

    key: str  # for --only
    title: str
    path: str
    servers: tuple[ServerSpec, ...]
    static: bool = False  # ratios against nginx with the host row's worker count
    min_rps_ratio: float | None = None
    max_cpu_ratio: float | None = None
    sleep_s: float | None = None  # target: 0.8 * connections / sleep_s req/s

    def base_for(self, server: ServerSpec) -> ServerSpec:
        """The server this row's ratios are computed against."""
        if not self.static:
            return BASELINE
        return NGINX_1 if server.workers == 1 else NGINX_N


WORKLOADS = (
    Workload("hello", "hello", "/hello", APP_SERVERS, max_cpu_ratio=1.20),
    Workload("ctime", "ctime", "/ctime", APP_SERVERS, max_cpu_ratio=1.20),
    Workload("static-4k", "static 4 KiB", "/4k.bin", STATIC_SERVERS, static=True, min_rps_ratio=1.1),
    Workload("static-1m", "static 1 MiB", "/1m.bin", STATIC_SERVERS, static=True, min_rps_ratio=1.2),
    Workload("sleep", "sleep 10 ms", "/sleep", APP_SERVERS, sleep_s=0.010),
)


@dataclass
class Scratch:
    """The run's temporary folder: site, wrk reporter, configs and logs."""

    tmp: Path
    site: Path
    reporter: Path


@dataclass
class RunResult:
    """One measured wrk run against one server."""

    workload: Workload
    server: ServerSpec
    connections: int
    requests: int
    duration_us: int
    errors: dict[str, int]
    p50_us: float
    p99_us: float
    cpu_ticks: int

    @property
    def rps(self) -> float:
        """Requests per second over wrk's measured duration."""
        return self.requests * 1e6 / self.duration_us if self.duration_us else 0.0

    @property
    def cpu_us_per_req(self) -> float | None:
        """Server CPU (user + system, all its processes) per request, in µs."""
        if not self.requests:
            return None
        return self.cpu_ticks * 1e6 / CLK_TCK / self.requests

    @property
    def error_total(self) -> int:
        """connect + read + write + status + timeout errors."""
        return sum(self.errors.values())


@dataclass
class Report:
    """The Markdown report, built section by section."""

    sections: list[str] = field(default_factory=list)

    def add(self, text: str) -> None:
        self.sections.append(text.rstrip("\n") + "\n")

    def text(self) -> str:
        return "\n".join(self.sections)


# --------------------------------------------------------------------------
# Setup


def make_scratch(tmp: Path) -> Scratch:
    """Writes the static site and the wrk reporter into `tmp`."""
    site = tmp / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><title>bench</title><p>bench site</p>\n")
    (site / "404.html").write_text("<!doctype html><title>404</title><p>not found</p>\n")
    (site / "4k.bin").write_bytes(os.urandom(4096))
    (site / "1m.bin").write_bytes(os.urandom(1 << 20))
    reporter = tmp / "report.lua"
    reporter.write_text(WRK_REPORTER_LUA)
    return Scratch(tmp=tmp, site=site, reporter=reporter)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def host_argv(
    port: int, site: Path, workers: int, hello: str = f"{BENCH_APPS}:hello", access_log: str = "off"
) -> list[str]:
    """The host command line with the bench apps (`hello`: the /hello app) and ctime mounted."""
    return [
        str(HOST_BIN), "-b", f"127.0.0.1:{port}", "--static-dir", str(site),
        "--access-log-format", access_log, "-w", str(workers),
        "--mount", f"/hello={hello}",
        "--mount", f"/sleep={BENCH_APPS}:sleep",
        "--mount", f"/ctime={CTIME_APP}:application",
    ]  # fmt: skip


def baseline_argv(port: int, site: Path) -> list[str]:
    """The plain hyper server's command line."""
    return [str(BASELINE_BIN), "--bind", f"127.0.0.1:{port}", "--static-dir", str(site)]


def nginx_argv(port: int, scratch: Scratch, workers: int, cert: h2load.Certificate | None = None) -> list[str]:
    """Writes an nginx config that keeps every path in the temp folder
    (serving HTTPS and h2 with `cert`, if given)."""
    (scratch.tmp / "nginx-temp").mkdir(exist_ok=True)
    # As root, nginx's workers would switch to "nobody", which may lack a
    # group of that name and cannot read the private temp folder.
    user = "user root;" if os.geteuid() == 0 else ""
    conf = scratch.tmp / f"nginx-{port}.conf"
    listen_options, server_extra = ("", "") if cert is None else (" ssl http2", h2load.nginx_tls_lines(cert))
    conf.write_text(
        NGINX_CONF.format(
            workers=workers, tmp=scratch.tmp, user=user, port=port, site=scratch.site,
            listen_options=listen_options, server_extra=server_extra,
        )
    )  # fmt: skip
    return [str(NGINX_BIN), "-c", str(conf), "-p", f"{scratch.tmp}/", "-e", str(scratch.tmp / "nginx-error.log")]


def server_argv(spec: ServerSpec, port: int, scratch: Scratch) -> list[str]:
    """The command line that starts `spec` on `port`."""
    if spec.kind == "baseline":
        return baseline_argv(port, scratch.site)
    if spec.kind == "host":
        return host_argv(port, scratch.site, spec.workers)
    if spec.kind == "host-c":
        return host_argv(port, scratch.site, spec.workers, hello=f"{BENCH_C_HELLO}:hello_app")
    if spec.kind == "host-text-log":
        return host_argv(port, scratch.site, spec.workers, access_log="text")
    return nginx_argv(port, scratch, spec.workers)


def check_prerequisites(workloads: list[Workload]) -> None:
    """Fails early, naming every missing binary or library."""
    needed = [HOST_BIN, BASELINE_BIN, BENCH_APPS, BENCH_C_HELLO, CTIME_APP]
    if any(NGINX_1 in w.servers for w in workloads):
        needed.append(NGINX_BIN)
    missing = [str(p) for p in needed if not p.exists()]
    missing += [tool for tool in ("wrk", "h2load", "openssl") if not shutil.which(tool)]
    if missing:
        raise BenchError(f"missing: {', '.join(missing)} (bench/run installs the tools and runs make build)")


# --------------------------------------------------------------------------
# /proc: process trees, CPU time, memory


def read_stat(pid: int) -> list[str] | None:
    """/proc/PID/stat fields from field 3 (state) on, or None if gone.

    The command name (field 2) may hold spaces and parentheses, so the
    split starts after its last ')'.
    """
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return text[text.rindex(")") + 2 :].split()


def process_tree(root: int) -> list[int]:
    """`root` and all its descendants (children found through ppid)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = read_stat(int(entry.name))
            if fields:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def cpu_ticks(root: int) -> int:
    """utime + stime, in clock ticks, of `root` and its descendants.

    These include each process's exited threads (the servers' pools).
    """
    total = 0
    for pid in process_tree(root):
        fields = read_stat(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # fields 14 and 15
    return total


def start_time(pid: int) -> int | None:
    """The process's start time (field 22), to tell it from a reused pid."""
    fields = read_stat(pid)
    return int(fields[19]) if fields else None


def rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def short_cmdline(pid: int) -> str:
    """The program's name plus its subcommand, if any (e.g. `host worker`)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (FileNotFoundError, ProcessLookupError):
        return "?"
    words = [os.path.basename(argv[0].decode(errors="replace"))]
    if len(argv) > 1 and argv[1] and not argv[1].startswith(b"-"):
        words.append(argv[1].decode(errors="replace"))
    return " ".join(words)


# --------------------------------------------------------------------------
# Servers


def http_get(port: int, path: str) -> int:
    """The status of one GET (body read fully), on a fresh connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


class Server:
    """A server process in its own session, logging to a file.

    Stopping sends SIGTERM to the main process, then SIGKILL to its whole
    process group and every descendant seen before the stop.
    """

    def __init__(self, label: str, argv: list[str], port: int, log_path: Path):
        self.label = label
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> None:
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"

    def fail(self, why: str) -> BenchError:
        """An error naming the server, the command and the log's tail."""
        return BenchError(
            f"{self.label}: {why}\n  command: {' '.join(self.argv)}\n  log {self.log_path} (tail):\n"
            + "\n".join("    " + line for line in self.log_tail().splitlines())
        )

    def wait_ready(self, paths: list[str], timeout: float) -> None:
        """Waits until the port accepts connections and every path answers 200."""
        deadline = time.monotonic() + timeout
        last = "no connection yet"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise self.fail(f"exited with code {self.proc.returncode} before it was ready")
            try:
                statuses = {path: http_get(self.port, path) for path in paths}
            except (OSError, http.client.HTTPException) as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if all(status == 200 for status in statuses.values()):
                    return
                last = ", ".join(f"GET {p} -> {s}" for p, s in statuses.items())
            time.sleep(0.1)
        raise self.fail(f"not ready after {timeout:.0f} s ({last})")

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stops the server; True if it exited on SIGTERM within `timeout`."""
        if self.proc is None or self.proc.returncode is not None:
            return True
        tree = [(pid, start_time(pid)) for pid in process_tree(self.pid)]
        graceful = True
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            graceful = False
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        for pid, started in tree:
            if started is not None and start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=timeout)
        if not graceful:
            print(f"  {self.label}: did not stop within {timeout:.0f} s of SIGTERM; killed", file=sys.stderr)
        return graceful


@contextlib.contextmanager
def running(
    spec: ServerSpec,
    scratch: Scratch,
    ready_paths: list[str],
    *,
    label: str | None = None,
    wrapper: tuple[str, ...] = (),
    ready_timeout: float = READY_TIMEOUT,
) -> Iterator[Server]:
    """Starts `spec` (under `wrapper`, e.g. valgrind), yields it once it serves, always stops it."""
    port = free_port()
    label = label or spec.name
    argv = [*wrapper, *server_argv(spec, port, scratch)]
    log_name = re.sub(r"[^\w.-]+", "_", label).strip("_")
    server = Server(label, argv, port, scratch.tmp / f"{log_name}-{port}.log")
    server.start()
    try:
        server.wait_ready(ready_paths, ready_timeout)
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------
# Throughput


def run_wrk(url: str, connections: int, seconds: float, scratch: Scratch) -> dict:
    """Runs wrk for `seconds` and returns the reporter's JSON.

    wrk takes whole seconds only, so a fractional run is started for the
    next whole second and ended early with SIGINT (wrk then reports as usual).
    """
    whole = max(1, math.ceil(seconds))
    argv = [
        "wrk", "-t1", f"-c{connections}", f"-d{whole}s", "--timeout", "5s", "--latency",
        "-s", str(scratch.reporter), url,
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        if whole != seconds:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=seconds)
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=whole + WRK_GRACE)
    except subprocess.TimeoutExpired:
        raise BenchError(f"wrk hung: {' '.join(argv)}") from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for line in reversed(out.splitlines()):
        if line.startswith('{"requests"'):
            return json.loads(line)
    raise BenchError(f"wrk gave no report (exit {proc.returncode}): {' '.join(argv)}\n{out}{err}")


def measure(server: Server, spec: ServerSpec, workload: Workload, connections: int, opts) -> RunResult:
    """A warmup run (discarded), then a measured run with the server's CPU time around it."""
    url = server.url(workload.path)
    if opts.warmup > 0:
        run_wrk(url, connections, opts.warmup, opts.scratch)
    before = cpu_ticks(server.pid)
    stats = run_wrk(url, connections, opts.duration, opts.scratch)
    after = cpu_ticks(server.pid)
    return RunResult(
        workload=workload,
        server=spec,
        connections=connections,
        requests=stats["requests"],
        duration_us=stats["duration_us"],
        errors=stats["errors"],
        p50_us=stats["p50_us"],
        p99_us=stats["p99_us"],
        cpu_ticks=after - before,
    )


def progress(result: RunResult) -> None:
    """One line per run on stderr, so a long run shows signs of life."""
    cpu = result.cpu_us_per_req
    print(
        f"  {result.server.name:8} {result.workload.title:13} c={result.connections:<3}"
        f" {result.rps:10.0f} req/s  p99 {result.p99_us / 1000:7.2f} ms"
        f"  {'-' if cpu is None else f'{cpu:.1f}'} µs/req  errors {result.error_total}",
        file=sys.stderr,
    )


def run_throughput(workloads: list[Workload], opts) -> list[RunResult]:
    """Starts each server once, runs all its workloads × connection counts, stops it."""
    results = []
    for spec in SERVERS:
        mine = [w for w in workloads if spec in w.servers]
        if not mine:
            continue
        print(f"{spec.name}: {len(mine) * len(CONNECTIONS)} runs", file=sys.stderr)
        with running(spec, opts.scratch, [w.path for w in mine]) as server:
            for workload in mine:
                for connections in CONNECTIONS:
                    result = measure(server, spec, workload, connections, opts)
                    progress(result)
                    results.append(result)
    return results


# --------------------------------------------------------------------------
# The throughput table


def ratio(value: float | None, base: float | None) -> float | None:
    """value / base, or None when either is missing (or base is 0)."""
    return value / base if value is not None and base else None


def fmt(value: float | None, spec: str) -> str:
    """A table cell: the value formatted, or a dash when there is none."""
    return "–" if value is None else format(value, spec)


def verdict(met: bool) -> str:
    """met, or a bold missed so it stands out."""
    return "met" if met else "**missed**"


def target_cell(result: RunResult, base: RunResult | None) -> str:
    """The host row's target and whether it was met; empty for other rows."""
    workload = result.workload
    if result.server.kind != "host":
        return ""
    if workload.sleep_s is not None:
        goal = 0.8 * result.connections / workload.sleep_s
        wanted = f"≥ 0.8·{result.connections}/{workload.sleep_s * 1000:g}ms = {goal:.0f} req/s"
        return f"{wanted}: {verdict(result.rps >= goal)}"
    wanted = ", ".join(
        part
        for part in (
            workload.min_rps_ratio and f"≥{workload.min_rps_ratio:g}× {workload.base_for(result.server).name} req/s",
            workload.max_cpu_ratio and f"≤{workload.max_cpu_ratio:.2f}× CPU",
        )
        if part
    )
    if base is None:
        return f"{wanted}: no base run"
    rps_ok = workload.min_rps_ratio is None or result.rps >= workload.min_rps_ratio * base.rps
    cpu_ratio = ratio(result.cpu_us_per_req, base.cpu_us_per_req)
    cpu_ok = workload.max_cpu_ratio is None or (cpu_ratio is not None and cpu_ratio <= workload.max_cpu_ratio)
    return f"{wanted}: {verdict(rps_ok and cpu_ok)}"


def errors_cell(result: RunResult) -> str:
    """0, or the total in bold with its breakdown."""
    if not result.error_total:
        return "0"
    parts = ", ".join(f"{kind} {n}" for kind, n in result.errors.items() if n)
    return f"**{result.error_total}** ({parts})"


def throughput_table(results: list[RunResult]) -> str:
    """One Markdown row per (workload, connections, server)."""
    index = {(r.workload.key, r.connections, r.server.name): r for r in results}
    lines = [
        "| workload | conns | server | req/s | base | ×req/s | p50 ms | p99 ms | CPU µs/req | ×CPU | errors | target |",
        "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for workload in WORKLOADS:
        for connections in CONNECTIONS:
            for spec in workload.servers:
                result = index.get((workload.key, connections, spec.name))
                if result is None:
                    continue
                base_spec = workload.base_for(spec)
                base = index.get((workload.key, connections, base_spec.name))
                cpu = result.cpu_us_per_req
                cells = [
                    workload.title,
                    str(connections),
                    spec.name,
                    f"{result.rps:.0f}",
                    base_spec.name,
                    fmt(ratio(result.rps, base.rps if base else None), ".2f"),
                    f"{result.p50_us / 1000:.2f}",
                    f"{result.p99_us / 1000:.2f}",
                    fmt(cpu, ".1f"),
                    fmt(ratio(cpu, base.cpu_us_per_req if base else None), ".2f"),
                    errors_cell(result),
                    target_cell(result, base),
                ]
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Idle memory


def idle_rss(spec: ServerSpec, scratch: Scratch) -> list[tuple[int, str, int]]:
    """(pid, command, RSS KiB) of the server's processes after it idles a moment."""
    with running(spec, scratch, ["/hello"], label=f"{spec.name} (idle RSS)") as server:
        time.sleep(IDLE_SETTLE)
        return [(pid, short_cmdline(pid), rss_kib(pid)) for pid in process_tree(server.pid)]


def mib(kib: int) -> str:
    """KiB as MiB with one decimal."""
    return f"{kib / 1024:.1f} MiB"


def rss_section(scratch: Scratch) -> str:
    """The idle RSS of host -w 1 (master + worker) and, for reference, the baseline."""
    print("idle RSS", file=sys.stderr)
    host = idle_rss(HOST_1, scratch)
    baseline = idle_rss(BASELINE, scratch)
    host_total = sum(kib for _, _, kib in host)
    met = host_total / 1024 <= RSS_TARGET_MIB
    lines = [
        "## Idle RSS",
        "",
        f"- idle RSS master + 1 worker: {mib(host_total)} (target ≤ {RSS_TARGET_MIB:.0f} MiB: "
        f"{verdict(met)})",
    ]
    lines += [f"  - pid {pid} `{cmd}`: {mib(kib)}" for pid, cmd, kib in host]
    lines.append(f"- baseline (reference): {mib(sum(kib for _, _, kib in baseline))}")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Callgrind


def send_keepalive_requests(port: int, path: str, count: int) -> None:
    """`count` GETs over one keep-alive connection, each response read fully."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT * 6)
    try:
        for i in range(count):
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise BenchError(f"callgrind: GET {path} #{i} -> {response.status}")
            if response.will_close and i + 1 < count:
                raise BenchError(f"callgrind: the server closed the keep-alive connection after {i + 1} requests")
    finally:
        conn.close()


def callgrind_total(path: Path) -> int:
    """The total Ir from a callgrind output file's summary: or totals: line."""
    totals = {}
    for line in path.read_text(errors="replace").splitlines():
        key, _, value = line.partition(":")
        if key in ("summary", "totals") and value.split():
            totals[key] = int(value.split()[0])
    if not totals:
        raise BenchError(f"callgrind: no summary/totals line in {path}")
    return totals.get("summary", totals.get("totals"))


def callgrind_ir(spec: ServerSpec, requests: int, scratch: Scratch) -> int:
    """Total instructions of a whole server run under callgrind that served `requests` /hello GETs."""
    out = scratch.tmp / f"callgrind-{spec.name}-{requests}.out"
    wrapper = ("valgrind", "--tool=callgrind", f"--callgrind-out-file={out}")
    label = f"{spec.name} (callgrind, {requests} requests)"
    print(f"  {label}", file=sys.stderr)
    with running(
        spec, scratch, ["/hello"], label=label, wrapper=wrapper, ready_timeout=CALLGRIND_READY_TIMEOUT
    ) as server:
        send_keepalive_requests(server.port, "/hello", requests)
        if not server.stop(CALLGRIND_STOP_TIMEOUT):
            raise server.fail("did not exit on SIGTERM, so callgrind wrote no complete profile")
    if not out.exists():
        raise BenchError(f"callgrind: {label} wrote no {out}")
    return callgrind_total(out)


def callgrind_section(scratch: Scratch) -> str:
    """Instructions per /hello request: host -w 0 (the Rust hello with the
    access log off, then with the default text log, then its C twin
    through the C interface) against the baseline."""
    print("callgrind", file=sys.stderr)
    host_w0 = ServerSpec("host -w 0", "host", 0)
    host_log_w0 = ServerSpec("host -w 0, text log", "host-text-log", 0)
    host_c_w0 = ServerSpec("host -w 0, C hello", "host-c", 0)
    few, many = CALLGRIND_COUNTS
    lines = [
        "## Instructions per request (callgrind, /hello)",
        "",
        f"Whole-run Ir with {few} and {many} requests over one keep-alive connection; "
        f"per request = (Ir{many} − Ir{few}) / {many - few}. Access log off but in the text-log row (the default).",
        "",
        f"| server | Ir @{few} | Ir @{many} | instructions/request |",
        "|---|---:|---:|---:|",
    ]
    per_request = {}
    for spec in (host_w0, host_log_w0, host_c_w0, BASELINE):
        ir = {count: callgrind_ir(spec, count, scratch) for count in CALLGRIND_COUNTS}
        per_request[spec.name] = (ir[many] - ir[few]) / (many - few)
        lines.append(f"| {spec.name} | {ir[few]:,} | {ir[many]:,} | {per_request[spec.name]:,.0f} |")
    host_ir, log_ir, c_ir, base_ir = (per_request[s.name] for s in (host_w0, host_log_w0, host_c_w0, BASELINE))
    lines += [
        "",
        f"- host/baseline: {fmt(ratio(host_ir, base_ir), '.2f')} "
        f"(target ≤ {IR_TARGET:,} instructions, log off: {verdict(host_ir <= IR_TARGET)})",
        f"- with the text log: {log_ir:,.0f} (target ≤ {IR_TEXT_LOG_TARGET:,}: {verdict(log_ir <= IR_TEXT_LOG_TARGET)})",
        f"- C hello/Rust hello: {fmt(ratio(c_ir, host_ir), '.3f')} (target ≤ 1.05: {verdict(c_ir <= 1.05 * host_ir)})",
    ]
    return "\n".join(lines)


def call_path_section() -> str:
    """The plugin call path alone: `cargo bench -p host --bench call_path`'s table."""
    print("call path micro-benchmark", file=sys.stderr)
    done = subprocess.run(
        ["cargo", "bench", "-q", "-p", "host", "--bench", "call_path"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise BenchError(f"cargo bench failed:\n{done.stderr[-2000:]}")
    table = [line for line in done.stdout.splitlines() if line.startswith("|")]
    return "## Plugin call path (cargo bench -p host --bench call_path)\n\n" + "\n".join(table)


# --------------------------------------------------------------------------
# TLS and HTTP/2

TLS_WORKLOADS = (("hello", "/hello"), ("static 4 KiB", "/4k.bin"))
H2_HELLO_CPU_TARGET = 1.1  # host CPU per h2 hello request against nginx's
TLS_CONNECTIONS = 32
TLS_STREAMS = 10  # requests in flight per HTTP/2 connection


def tls_argv(spec: ServerSpec, port: int, scratch: Scratch, cert: h2load.Certificate) -> list[str]:
    """`spec` serving HTTPS (HTTP/1.1 and h2) with `cert` on `port`."""
    if spec.kind == "host":
        return [*host_argv(port, scratch.site, spec.workers), "--certfile", str(cert.certfile), "--keyfile", str(cert.keyfile)]
    return nginx_argv(port, scratch, spec.workers, cert)


def wait_tls_ready(server: Server, paths: list[str]) -> None:
    """Waits until every path answers 200 over HTTPS (h2load, one request each)."""
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise server.fail(f"exited with code {server.proc.returncode} before it was ready")
        try:
            ready = all(
                h2load.run(f"https://127.0.0.1:{server.port}{p}", http1=True, connections=1, streams=1, seconds=0.2).succeeded
                for p in paths
            )
        except (ValueError, subprocess.SubprocessError):
            ready = False
        if ready:
            return
        time.sleep(0.2)
    raise server.fail(f"not ready over HTTPS after {READY_TIMEOUT:.0f} s")


def tls_h2_section(opts) -> str:
    """hello and a 4 KiB file over TLS, HTTP/1.1 and h2, host against nginx with the same certificate."""
    print("TLS and HTTP/2 (h2load)", file=sys.stderr)
    cert = h2load.make_certificate(opts.scratch.tmp)
    measured: dict[tuple[str, str, str], tuple[float, float | None, int]] = {}
    for spec in (NGINX_1, NGINX_N, HOST_1, HOST_N):
        port = free_port()
        server = Server(f"{spec.name} TLS", tls_argv(spec, port, opts.scratch, cert), port, opts.scratch.tmp / f"tls-{spec.name}.log")
        server.start()
        try:
            wait_tls_ready(server, [path for _, path in TLS_WORKLOADS])
            for title, path in TLS_WORKLOADS:
                for protocol in ("HTTP/1.1", "h2"):
                    load = dict(http1=protocol == "HTTP/1.1", connections=TLS_CONNECTIONS, streams=TLS_STREAMS)
                    url = f"https://127.0.0.1:{port}{path}"
                    if opts.warmup > 0:
                        h2load.run(url, seconds=opts.warmup, **load)
                    before = cpu_ticks(server.pid)
                    result = h2load.run(url, seconds=opts.duration, **load)
                    ticks = cpu_ticks(server.pid) - before
                    rps = result.succeeded / result.seconds if result.seconds else 0.0
                    cpu = ticks * 1e6 / CLK_TCK / result.succeeded if result.succeeded else None
                    measured[(title, protocol, spec.name)] = (rps, cpu, result.failed + result.errored)
                    print(f"  {spec.name:8} {title:13} {protocol:8} {rps:10.0f} req/s  {'-' if cpu is None else f'{cpu:.1f}'} µs/req", file=sys.stderr)
        except ValueError as exc:
            raise BenchError(str(exc)) from None
        finally:
            server.stop()
    lines = [
        "## TLS and HTTP/2 (h2load)",
        "",
        f"h2load -t1 -c{TLS_CONNECTIONS}, -m{TLS_STREAMS} for h2 (one request at a time per connection for HTTP/1.1, "
        f"which h2load does not pipeline); {opts.duration:g} s per run after a {opts.warmup:g} s warmup; "
        "the same ECDSA P-256 certificate for both; nginx answers /hello with `return 200` (it runs no app). "
        "Ratios are host against nginx with the same worker count and protocol.",
        "",
        "| workload | protocol | server | req/s | CPU µs/req | req/s vs nginx | CPU vs nginx | failed |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for title, _ in TLS_WORKLOADS:
        for protocol in ("HTTP/1.1", "h2"):
            for spec in (NGINX_1, HOST_1, NGINX_N, HOST_N):
                rps, cpu, failed = measured[(title, protocol, spec.name)]
                base = NGINX_1 if spec.workers == 1 else NGINX_N
                base_rps, base_cpu, _ = measured[(title, protocol, base.name)]
                vs = (fmt(ratio(rps, base_rps), ".2f"), fmt(ratio(cpu, base_cpu), ".2f")) if spec.kind == "host" else ("", "")
                lines.append(f"| {title} | {protocol} | {spec.name} | {rps:,.0f} | {fmt(cpu, '.1f')} | {vs[0]} | {vs[1]} | {failed} |")
    h2_cpu = [
        ratio(measured[("hello", "h2", host.name)][1], measured[("hello", "h2", nginx.name)][1])
        for host, nginx in ((HOST_1, NGINX_1), (HOST_N, NGINX_N))
    ]
    met = all(r is not None and r <= H2_HELLO_CPU_TARGET for r in h2_cpu)
    shown = " / ".join(fmt(r, ".2f") for r in h2_cpu)
    lines += ["", f"h2 hello CPU vs nginx (host-1 / host-N): {shown} (target ≤ {H2_HELLO_CPU_TARGET:g}: {verdict(met)})"]
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Report header and command line


def git_commit() -> str:
    """`git rev-parse --short HEAD`, plus "dirty" if the tree has changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "--short", "HEAD")
        return commit + (" dirty" if git("status", "--porcelain") else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def header(opts) -> str:
    """The report's title and the conditions of the run; warns if the machine is busy."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"bench: warning: load average {load:.2f} at start; other work skews the numbers", file=sys.stderr)
    return (
        f"# Benchmark {now}\n\n"
        f"machine: nproc {NPROC}, kernel {platform.release()}; "
        f"wrk -t1, {opts.duration:g} s per run after a {opts.warmup:g} s warmup; "
        f"N = {NPROC}; load average {load:.2f} at start; commit {git_commit()}"
    )


def select_workloads(only: str | None) -> list[Workload]:
    """The workloads named by --only (a key, a key's prefix such as `static`, or a title), or all."""
    if not only:
        return list(WORKLOADS)
    names = [name.strip().lower() for name in only.split(",") if name.strip()]

    def named(workload: Workload, name: str) -> bool:
        return workload.key.startswith(name) or workload.title.lower() == name

    unknown = [n for n in names if not any(named(w, n) for w in WORKLOADS)]
    if unknown or not names:
        keys = ", ".join(w.key for w in WORKLOADS)
        raise BenchError(f"--only: unknown workload {', '.join(unknown) or repr(only)}; choose from {keys}")
    return [w for w in WORKLOADS if any(named(w, n) for n in names)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The options, with --quick's durations filled in where none were given."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, metavar="SECONDS", help="per measured wrk run (default 5)")
    parser.add_argument("--warmup", type=float, metavar="SECONDS", help="warmup before each run (default 1)")
    parser.add_argument(
        "--only", metavar="NAME[,NAME]", help="workloads: " + ", ".join(w.key for w in WORKLOADS) + " (prefixes work)"
    )
    parser.add_argument("--skip-callgrind", action="store_true", help="skip instructions per request")
    parser.add_argument("--skip-tls", action="store_true", help="skip the TLS and HTTP/2 runs")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report (default %(default)s)")
    parser.add_argument("--quick", action="store_true", help="--duration 2 --warmup 0.5")
    opts = parser.parse_args(argv)
    quick_or_default = (2.0, 0.5) if opts.quick else (5.0, 1.0)
    opts.duration = opts.duration if opts.duration is not None else quick_or_default[0]
    opts.warmup = opts.warmup if opts.warmup is not None else quick_or_default[1]
    if opts.duration <= 0 or opts.warmup < 0:
        parser.error("--duration must be > 0 and --warmup ≥ 0")
    return opts


def raise_interrupted(signum, frame) -> None:
    """SIGTERM handler: unwind so every server is stopped."""
    raise Interrupted()


def run(opts, report: Report) -> None:
    """Every section, in order, each added to `report` as soon as it is done."""
    report.add(header(opts))
    workloads = select_workloads(opts.only)
    check_prerequisites(workloads)
    report.add("## Throughput\n\n" + throughput_table(run_throughput(workloads, opts)))
    report.add(rss_section(opts.scratch))
    if opts.skip_tls:
        report.add("## TLS and HTTP/2 (h2load)\n\nskipped (--skip-tls)")
    else:
        report.add(tls_h2_section(opts))
    report.add(call_path_section())
    if opts.skip_callgrind:
        report.add("## Instructions per request\n\nskipped (--skip-callgrind)")
    elif not shutil.which("valgrind"):
        report.add("## Instructions per request\n\nskipped (valgrind is not installed)")
    else:
        report.add(callgrind_section(opts.scratch))


def main(argv: list[str] | None = None) -> int:
    """Runs the benchmark; returns 0, 1 on a failure, 130 when interrupted."""
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupted)
    report = Report()
    status = 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-"))
    try:
        opts.scratch = make_scratch(tmp)
        run(opts, report)
    except BenchError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        report.add(f"**aborted:** {exc}")
        status = 1
    except (KeyboardInterrupt, Interrupted):
        print("bench: interrupted", file=sys.stderr)
        report.add("**aborted:** interrupted")
        status = 130
    finally:
        if status == 1:
            print(f"bench: logs kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    text = report.text()
    print(text)
    opts.out.parent.mkdir(parents=True, exist_ok=True)
    opts.out.write_text(text)
    print(f"written to {opts.out}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
