#!/usr/bin/env python3
"""Async apps and WebSockets: the host's async app (the echo plugin's
`async_application`) against the limits of its stack (plain hyper and
tokio-tungstenite servers, `wsload` in bench/wsload) and against granian
serving an ASGI app (bench/async_asgi.py). Run it through `bench/async`,
which installs wrk and granian and builds first.

Scenarios (all by default, or name some):
  sleep     2,000 connections looping on /sleep/100 for 20 s (wrk -t2
            -c2000): req/s against the ideal 20,000 and against plain
            hyper, p50/p99 latency, non-2xx and socket errors, and RSS per
            waiting request. Servers: the host's async app and its sync app
            (-w 1 --threads 4), hyper, granian (ASGI, one worker).
  ws-echo   100 WebSockets each sending a 64-byte text message and waiting
            for its echo, in a loop, for 10 s (after a 1 s warmup):
            messages/s and p50/p99 round trip. Servers: the host's /ws,
            tokio-tungstenite, granian.
  ws-idle   10,000 WebSockets opened and held idle for 30 s while the
            client answers the server's pings (every 5 s): RSS per socket
            and sockets still open at the end. Servers: the host
            (--ws-ping-interval 5s --ws-ping-timeout 5s), tokio-tungstenite
            pinging as often.

Every ratio is against the limit measured in the same run. Memory is VmRSS
and CPU is user + system time, both of the server's whole process tree
(master and workers), from /proc.
Standard library only; everything listens on 127.0.0.1 and every run is
bounded in time. Prints Markdown and writes it to --out.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import json
import os
import platform
import queue
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from bench import (
    CLK_TCK,
    WRK_REPORTER_LUA,
    BenchError,
    Interrupted,
    Report,
    Server,
    cpu_ticks,
    fmt,
    free_port,
    git_commit,
    process_tree,
    ratio,
    rss_kib,
    verdict,
)

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
HOST_BIN = RELEASE / "host"
WSLOAD_BIN = RELEASE / "wsload"
ECHO_LIB = RELEASE / "libecho.so"
ASGI_DIR = ROOT / "bench"
ASGI_APP = "async_asgi:app"
DEFAULT_OUT = ROOT / "bench" / "results" / "async.md"

READY_TIMEOUT = 30.0  # seconds for a server to start answering
IDLE_SETTLE = 1.0  # seconds a server idles before its idle RSS is read
PROBE_TIMEOUT = 5.0  # seconds for one readiness probe
RSS_EVERY = 0.5  # seconds between RSS samples under load
RUN_GRACE = 60.0  # seconds a client may overrun its planned time before it counts as hung
IDLE_OPEN_SECONDS = 120.0  # the longest wsload idle may take to open its sockets

SLEEP_MS = 100


@dataclass(frozen=True)
class Plan:
    """The scenarios' sizes; --quick shrinks them for a smoke run."""

    sleep_connections: int = 2000
    sleep_seconds: int = 20
    echo_connections: int = 100
    echo_seconds: float = 10.0
    echo_warmup: float = 1.0
    echo_size: int = 64
    idle_connections: int = 10_000
    idle_seconds: float = 30.0
    idle_concurrency: int = 100  # handshakes in progress at once
    ping_seconds: int = 5


FULL = Plan()
QUICK = Plan(
    sleep_connections=500, sleep_seconds=3, echo_seconds=2.0, echo_warmup=0.5, idle_connections=1000, idle_seconds=6.0
)

ECHO_TARGET = 0.8  # the host's messages/s against tokio-tungstenite's
IDLE_TARGET_KIB = 32.0  # the host's RSS per idle socket


# --------------------------------------------------------------------------
# Servers


@dataclass(frozen=True)
class ServerSpec:
    """One server: its row name, command line (given the port) and how to
    tell it is ready (`http`: GET /sleep/0 answers 200; `ws`: a WebSocket
    handshake at /ws answers 101)."""

    name: str
    argv: Callable[[int], list[str]]
    probe: str


def host_argv(app: str, *extra: str) -> Callable[[int], list[str]]:
    """The host with one worker and four app threads serving echo's `app`."""
    return lambda port: [
        str(HOST_BIN), "--bind", f"127.0.0.1:{port}", "--no-static", "-w", "1", "--threads", "4",
        "--access-log-format", "off", *extra, f"{ECHO_LIB}:{app}",
    ]  # fmt: skip


def wsload_argv(command: str, *extra: str) -> Callable[[int], list[str]]:
    """One of wsload's plain servers."""
    return lambda port: [str(WSLOAD_BIN), command, "--port", str(port), *extra]


def granian_argv(port: int) -> list[str]:
    """granian serving the ASGI app with one worker; --backlog 4096 also
    lifts its default backpressure (backlog ÷ workers = 1,024 requests in
    progress), which would otherwise cap the sleep scenario at 1,024
    waiting requests."""
    return [
        "granian", "--interface", "asgi", "--workers", "1", "--host", "127.0.0.1", "--port", str(port),
        "--backlog", "4096", "--no-access-log", "--working-dir", str(ASGI_DIR), ASGI_APP,
    ]  # fmt: skip


HYPER = ServerSpec("hyper (limit)", wsload_argv("sleep-server"), "http")
HOST_ASYNC = ServerSpec("host async app", host_argv("async_application"), "http")
HOST_SYNC = ServerSpec("host sync app", host_argv("application"), "http")
GRANIAN = ServerSpec("granian ASGI", granian_argv, "http")
TUNGSTENITE = ServerSpec("tokio-tungstenite (limit)", wsload_argv("echo-server"), "ws")
HOST_WS = ServerSpec("host async app", host_argv("async_application"), "ws")
GRANIAN_WS = ServerSpec("granian ASGI", granian_argv, "ws")


def http_ready(port: int) -> str | None:
    """None if GET /sleep/0 answers 200, else what happened."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=PROBE_TIMEOUT)
    try:
        conn.request("GET", "/sleep/0")
        response = conn.getresponse()
        response.read()
        return None if response.status == 200 else f"GET /sleep/0 -> {response.status}"
    except (OSError, http.client.HTTPException) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        conn.close()


def ws_ready(port: int) -> str | None:
    """None if a WebSocket handshake at /ws answers 101, else what happened."""
    request = (
        "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(request.encode())
            head = b""
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    return "closed before an answer"
                head += data
    except OSError as exc:
        return f"{type(exc).__name__}: {exc}"
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    return None if status_line.split(" ")[1:2] == ["101"] else f"handshake -> {status_line}"


@contextlib.contextmanager
def running(spec: ServerSpec, tmp: Path) -> Iterator[Server]:
    """Starts `spec` on a free port, yields it once it is ready, always stops it."""
    port = free_port()
    log_name = re.sub(r"[^\w.-]+", "_", spec.name).strip("_")
    server = Server(spec.name, spec.argv(port), port, tmp / f"{log_name}-{port}.log")
    server.start()
    try:
        probe = http_ready if spec.probe == "http" else ws_ready
        deadline = time.monotonic() + READY_TIMEOUT
        while (why := probe(port)) is not None:
            if server.proc.poll() is not None:
                raise server.fail(f"exited with code {server.proc.returncode} before it was ready")
            if time.monotonic() > deadline:
                raise server.fail(f"not ready after {READY_TIMEOUT:.0f} s ({why})")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------
# Memory


def tree_rss_kib(pid: int) -> int:
    """VmRSS of `pid` and all its descendants, in KiB."""
    return sum(rss_kib(p) for p in process_tree(pid))


def idle_rss_kib(server: Server) -> int:
    """The server's RSS after it has idled a moment."""
    time.sleep(IDLE_SETTLE)
    return tree_rss_kib(server.pid)


class RssSampler(threading.Thread):
    """Samples a server's RSS every RSS_EVERY seconds until stopped."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[int] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(RSS_EVERY):
            self.samples.append(tree_rss_kib(self.pid))

    def stop(self) -> int:
        """Stops sampling; returns the peak (0 if no sample was taken)."""
        self.stopping.set()
        self.join(timeout=10)
        return max(self.samples, default=0)


# --------------------------------------------------------------------------
# Clients


def run_client(argv: list[str], seconds: float) -> str:
    """Runs a load client that should take `seconds`; returns its stdout."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + RUN_GRACE, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"hung: {' '.join(argv)}") from None
    if done.returncode != 0 and not done.stdout.strip():
        raise BenchError(f"failed (exit {done.returncode}): {' '.join(argv)}\n{done.stderr.strip()}")
    return done.stdout


def last_json(out: str, key: str, argv: list[str]) -> dict:
    """The last line of `out` that is a JSON object with `key`."""
    for line in reversed(out.splitlines()):
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if key in value:
                    return value
    raise BenchError(f"no report from {' '.join(argv)}:\n{out}")


def run_wrk(url: str, connections: int, seconds: int, reporter: Path) -> dict:
    """wrk -t2 for `seconds`; the reporter's JSON line. Its timeout (15 s)
    is longer than the host's queue timeout (10 s), so a request the host
    refuses after queueing counts as a 503, not as a wrk timeout."""
    argv = [
        "wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "15s", "--latency",
        "-s", str(reporter), url,
    ]  # fmt: skip
    return last_json(run_client(argv, seconds), "requests", argv)


# --------------------------------------------------------------------------
# sleep


@dataclass
class SleepRow:
    """One server's sleep run."""

    spec: ServerSpec
    wrk: dict
    idle_kib: int
    load_kib: int
    cpu_ticks: int  # the server's user + system time during the run

    @property
    def cpu_us_per_answer(self) -> float | None:
        """Server CPU per answer of any status, in µs."""
        return self.cpu_ticks * 1e6 / CLK_TCK / self.wrk["requests"] if self.wrk["requests"] else None

    @property
    def seconds(self) -> float:
        """wrk's measured duration."""
        return self.wrk["duration_us"] / 1e6

    @property
    def non_2xx(self) -> int:
        """Responses with a status other than 2xx or 3xx (wrk's status errors)."""
        return self.wrk["errors"]["status"]

    @property
    def ok_per_s(self) -> float:
        """2xx (and 3xx) responses per second."""
        return (self.wrk["requests"] - self.non_2xx) / self.seconds if self.seconds else 0.0

    @property
    def all_per_s(self) -> float:
        """Responses of any status per second."""
        return self.wrk["requests"] / self.seconds if self.seconds else 0.0

    @property
    def socket_errors(self) -> str:
        """wrk's connect, read, write and timeout errors, or 0."""
        errors = {k: v for k, v in self.wrk["errors"].items() if k != "status" and v}
        return ", ".join(f"{k} {v}" for k, v in errors.items()) or "0"


def sleep_scenario(plan: Plan, tmp: Path) -> str:
    """2,000 connections on /sleep/100 against each server."""
    reporter = tmp / "report.lua"
    reporter.write_text(WRK_REPORTER_LUA)
    rows = []
    for spec in (HYPER, HOST_ASYNC, HOST_SYNC, GRANIAN):
        with running(spec, tmp) as server:
            idle = idle_rss_kib(server)
            sampler = RssSampler(server.pid)
            sampler.start()
            before = cpu_ticks(server.pid)
            try:
                stats = run_wrk(server.url(f"/sleep/{SLEEP_MS}"), plan.sleep_connections, plan.sleep_seconds, reporter)
            finally:
                peak = sampler.stop()
            cpu = cpu_ticks(server.pid) - before
        row = SleepRow(spec, stats, idle, peak, cpu)
        rows.append(row)
        print(
            f"  sleep {spec.name}: {row.ok_per_s:.0f} 2xx/s, {row.all_per_s:.0f} responses/s, "
            f"p99 {stats['p99_us'] / 1000:.0f} ms, RSS {idle / 1024:.1f} -> {peak / 1024:.1f} MiB",
            file=sys.stderr,
        )
    return sleep_table(plan, rows)


def sleep_table(plan: Plan, rows: list[SleepRow]) -> str:
    """The sleep scenario's section."""
    ideal = plan.sleep_connections * 1000 / SLEEP_MS
    limit = next((r for r in rows if r.spec is HYPER), None)
    lines = [
        f"### sleep: {plan.sleep_connections:,} connections looping on /sleep/{SLEEP_MS} for "
        f"{plan.sleep_seconds} s (wrk -t2 -c{plan.sleep_connections})",
        "",
        f"Ideal: {plan.sleep_connections:,} ÷ {SLEEP_MS} ms = {ideal:,.0f} req/s. req/s counts 2xx answers; "
        "latency is over all answers; CPU is the server's process tree's user + system time per answer; "
        "RSS is the server's process tree, idle and at its peak under load "
        f"(sampled every {RSS_EVERY:g} s); per waiting request = (peak − idle) ÷ {plan.sleep_connections:,}.",
        "",
        "| server | req/s | vs ideal | vs hyper | all answers/s | p50 ms | p99 ms | non-2xx | socket errors "
        "| CPU µs/answer | idle RSS MiB | load RSS MiB | KiB per waiting request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        cells = [
            row.spec.name,
            f"{row.ok_per_s:,.0f}",
            f"{row.ok_per_s / ideal:.2f}",
            fmt(ratio(row.ok_per_s, limit.ok_per_s if limit else None), ".2f"),
            f"{row.all_per_s:,.0f}",
            f"{row.wrk['p50_us'] / 1000:.1f}",
            f"{row.wrk['p99_us'] / 1000:.1f}",
            f"{row.non_2xx:,}",
            row.socket_errors,
            fmt(row.cpu_us_per_answer, ".1f"),
            f"{row.idle_kib / 1024:.1f}",
            f"{row.load_kib / 1024:.1f}",
            f"{(row.load_kib - row.idle_kib) / plan.sleep_connections:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# ws-echo


def wsload_echo(port: int, plan: Plan, seconds: float) -> dict:
    """`wsload echo` against ws://127.0.0.1:PORT/ws for `seconds`."""
    argv = [
        str(WSLOAD_BIN), "echo", "--url", f"ws://127.0.0.1:{port}/ws", "--connections", str(plan.echo_connections),
        "--seconds", str(seconds), "--size", str(plan.echo_size),
    ]  # fmt: skip
    return last_json(run_client(argv, seconds), "messages", argv)


def ws_echo_scenario(plan: Plan, tmp: Path) -> str:
    """100 sockets echoing 64-byte messages against each server."""
    rows = []
    for spec in (TUNGSTENITE, HOST_WS, GRANIAN_WS):
        with running(spec, tmp) as server:
            wsload_echo(server.port, plan, plan.echo_warmup)
            before = cpu_ticks(server.pid)
            result = wsload_echo(server.port, plan, plan.echo_seconds)
            seconds = (cpu_ticks(server.pid) - before) / CLK_TCK
        result["cpu_us_per_message"] = seconds * 1e6 / result["messages"] if result["messages"] else None
        rows.append((spec, result))
        print(
            f"  ws-echo {spec.name}: {result['per_second']:.0f} messages/s, p99 {result['p99_us']} µs, "
            f"errors {result['errors']}",
            file=sys.stderr,
        )
    limit = next((r for s, r in rows if s is TUNGSTENITE), None)
    lines = [
        f"### ws-echo: {plan.echo_connections} WebSockets, each sending a {plan.echo_size}-byte text message "
        f"and awaiting its echo, in a loop, for {plan.echo_seconds:g} s",
        "",
        f"wsload echo (one client thread), after a {plan.echo_warmup:g} s warmup; "
        "round trips from send to echo received; CPU is the server's process tree's user + system time "
        "per message echoed.",
        "",
        "| server | messages/s | vs tokio-tungstenite | p50 µs | p99 µs | CPU µs/message | errors | sockets open "
        "| target |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    for spec, result in rows:
        share = ratio(result["per_second"], limit["per_second"] if limit else None)
        target = ""
        if spec is HOST_WS:
            target = f"≥ {ECHO_TARGET:g}×: " + ("no limit run" if share is None else verdict(share >= ECHO_TARGET))
        cells = [
            spec.name,
            f"{result['per_second']:,.0f}",
            fmt(share, ".2f"),
            fmt(result["p50_us"], ",d"),
            fmt(result["p99_us"], ",d"),
            fmt(result["cpu_us_per_message"], ".1f"),
            tally(result["errors"]),
            f"{result['opened']}/{result['connections']}",
            target,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def tally(counts: dict) -> str:
    """A {kind: count} object as `kind n, …`, or 0."""
    return ", ".join(f"{kind} {n}" for kind, n in counts.items()) or "0"


# --------------------------------------------------------------------------
# ws-idle


@dataclass
class IdleRow:
    """One server's ws-idle run."""

    spec: ServerSpec
    opened: dict
    done: dict
    idle_kib: int
    open_kib: int  # the last sample before the client's end of hold
    peak_kib: int


class EventLines:
    """Reads a client's stdout on a thread and hands over its JSON lines
    that have an "event" key."""

    def __init__(self, proc: subprocess.Popen, argv: list[str]):
        self.proc, self.argv = proc, argv
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait(self, event: str, timeout: float) -> dict | None:
        """The next `event` line within `timeout` seconds, or None; fails
        if the client ends without it."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if line is None:
                raise BenchError(f"ended without an {event!r} line: {' '.join(self.argv)}\n{self.proc.stderr.read()}")
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if value.get("event") == event:
                    return value


def hold_idle_sockets(server: Server, plan: Plan) -> tuple[dict, dict, int, int]:
    """Runs `wsload idle` against the server, sampling its RSS every second
    while the sockets are held: (opened line, done line, last sample, peak)."""
    argv = [
        str(WSLOAD_BIN), "idle", "--url", f"ws://127.0.0.1:{server.port}/ws",
        "--connections", str(plan.idle_connections), "--seconds", str(plan.idle_seconds),
        "--concurrency", str(plan.idle_concurrency), "--open-seconds", str(IDLE_OPEN_SECONDS),
    ]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        events = EventLines(proc, argv)
        opened = events.wait("opened", IDLE_OPEN_SECONDS + RUN_GRACE)
        if opened is None:
            raise BenchError(f"no 'opened' line within {IDLE_OPEN_SECONDS + RUN_GRACE:.0f} s: {' '.join(argv)}")
        samples = []
        end = time.monotonic() + plan.idle_seconds + RUN_GRACE
        done = None
        while done is None:
            if time.monotonic() > end:
                raise BenchError(f"no 'done' line within {plan.idle_seconds + RUN_GRACE:.0f} s: {' '.join(argv)}")
            samples.append(tree_rss_kib(server.pid))
            done = events.wait("done", 1.0)
        proc.wait(timeout=RUN_GRACE)
        return opened, done, samples[-1], max(samples)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def ws_idle_scenario(plan: Plan, tmp: Path) -> str:
    """10,000 idle sockets held against the host and tokio-tungstenite."""
    ping = f"{plan.ping_seconds}s"
    specs = (
        ServerSpec(
            "host async app",
            host_argv("async_application", "--ws-ping-interval", ping, "--ws-ping-timeout", ping),
            "ws",
        ),
        ServerSpec("tokio-tungstenite", wsload_argv("echo-server", "--ping-interval", str(plan.ping_seconds)), "ws"),
    )
    rows = []
    for spec in specs:
        with running(spec, tmp) as server:
            idle = idle_rss_kib(server)
            opened, done, last, peak = hold_idle_sockets(server, plan)
        row = IdleRow(spec, opened, done, idle, last, peak)
        rows.append(row)
        print(
            f"  ws-idle {spec.name}: {done['still_open']}/{done['opened']} still open, "
            f"RSS {idle / 1024:.1f} -> {last / 1024:.1f} MiB",
            file=sys.stderr,
        )
    lines = [
        f"### ws-idle: {plan.idle_connections:,} WebSockets held idle for {plan.idle_seconds:g} s, "
        f"pinged every {plan.ping_seconds} s",
        "",
        f"wsload idle: {plan.idle_concurrency} handshakes at a time, then every socket reads (and answers pings) "
        f"without sending. RSS with the sockets open is the last sample (taken every second) before the end "
        f"of the hold; per socket = (that − idle) ÷ sockets open. The host runs with `--ws-ping-interval {ping} "
        f"--ws-ping-timeout {ping}`; tokio-tungstenite pings as often (`wsload echo-server --ping-interval "
        f"{plan.ping_seconds}`).",
        "",
        "| server | opened | open time s | still open at the end | ended early | fewest pings answered "
        "| idle RSS MiB | RSS open MiB | peak MiB | KiB per socket | target |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        opened = row.done["opened"]
        per_socket = (row.open_kib - row.idle_kib) / opened if opened else None
        target = ""
        if row.spec.name.startswith("host"):
            all_open = row.done["still_open"] == plan.idle_connections
            target = (
                f"≤ {IDLE_TARGET_KIB:g} KiB: {verdict(per_socket is not None and per_socket <= IDLE_TARGET_KIB)}; "
                f"all open: {verdict(all_open)}"
            )
        failed = tally(row.opened["failed"])
        cells = [
            row.spec.name,
            f"{opened:,}" + ("" if failed == "0" else f" (failed: {failed})"),
            f"{row.opened['open_seconds']:.1f}",
            f"{row.done['still_open']:,}",
            tally(row.done["ended"]),
            fmt(row.done["min_pings"], "d"),
            f"{row.idle_kib / 1024:.1f}",
            f"{row.open_kib / 1024:.1f}",
            f"{row.peak_kib / 1024:.1f}",
            fmt(per_socket, ".1f"),
            target,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# Command line


SCENARIOS: dict[str, Callable[[Plan, Path], str]] = {
    "sleep": sleep_scenario,
    "ws-echo": ws_echo_scenario,
    "ws-idle": ws_idle_scenario,
}


def raise_open_files_limit() -> int:
    """Raises this process's RLIMIT_NOFILE soft limit to the hard limit (the
    servers and clients started from here inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def check_prerequisites(names: list[str], plan: Plan, nofile: int) -> None:
    """Fails early, naming every missing binary and a too-low file limit."""
    missing = [str(p) for p in (HOST_BIN, WSLOAD_BIN, ECHO_LIB) if not p.exists()]
    if "sleep" in names and not shutil.which("wrk"):
        missing.append("wrk")
    if {"sleep", "ws-echo"} & set(names) and not shutil.which("granian"):
        missing.append("granian")
    if missing:
        raise BenchError(f"missing: {', '.join(missing)} (bench/async installs them and builds)")
    needed = max(plan.sleep_connections, plan.idle_connections) + 1000
    if nofile != resource.RLIM_INFINITY and nofile < needed:
        raise BenchError(f"the open-file hard limit is {nofile}; these scenarios need {needed} (ulimit -Hn)")


def header(names: list[str], nofile: int) -> str:
    """The report's title and the conditions of the run."""
    now = datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(f"async: warning: load average {load:.2f} at start; other work skews the numbers", file=sys.stderr)
    granian = "not installed"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        granian = subprocess.run(
            ["granian", "--version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    return (
        f"## Async apps and WebSockets {now}\n\n"
        f"machine: nproc {os.cpu_count()}, kernel {platform.release()}; load average {load:.2f} at start; "
        f"commit {git_commit()}; {granian} (Python {platform.python_version()}, asyncio loop); "
        f"open-file limit {nofile}; scenarios: {', '.join(names)}"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The scenarios to run (default: all) and where to write the report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=f"{', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="Markdown report (default %(default)s)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: fewer connections, shorter runs (not for figures)"
    )
    opts = parser.parse_args(argv)
    unknown = [name for name in opts.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    return opts


def raise_interrupted(signum, frame) -> None:
    """SIGTERM handler: unwind so every server is stopped."""
    raise Interrupted()


def main(argv: list[str] | None = None) -> int:
    """Runs the scenarios; returns 0, 1 on a failure, 130 when interrupted."""
    opts = parse_args(argv)
    signal.signal(signal.SIGTERM, raise_interrupted)
    names = [name for name in SCENARIOS if name in opts.scenarios] or list(SCENARIOS)
    plan = QUICK if opts.quick else FULL
    nofile = raise_open_files_limit()
    report = Report()
    status = 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-async-"))
    try:
        report.add(header(names, nofile))
        check_prerequisites(names, plan, nofile)
        for name in names:
            started = time.monotonic()
            print(f"{name}:", file=sys.stderr)
            report.add(SCENARIOS[name](plan, tmp))
            print(f"  ({name}: {time.monotonic() - started:.0f} s)", file=sys.stderr)
    except BenchError as exc:
        print(f"async: error: {exc}", file=sys.stderr)
        report.add(f"**aborted:** {exc}")
        status = 1
    except (KeyboardInterrupt, Interrupted):
        print("async: interrupted", file=sys.stderr)
        report.add("**aborted:** interrupted")
        status = 130
    finally:
        if status == 1:
            print(f"async: logs kept in {tmp}", file=sys.stderr)
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
