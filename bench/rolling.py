#!/usr/bin/env python3
"""Two hosts behind a real load balancer on 127.0.0.1, under load from
kept-alive clients (GET and POST), while each host in turn is swapped or
restarted. Counts failed requests. Run it through `bench/rolling`, which
installs nginx and HAProxy and builds first.

  nginx      upstream of both hosts; ROUNDS rolling hot swaps (SIGHUP to
             one host, wait for its new generation, then the other).
  haproxy    health checks on each host's /readyz (admin port); ROUNDS
             rolling restarts (SIGTERM: /readyz turns 503 and the host
             drains; a new process on the same ports; wait for /readyz).

Standard library only; bounded in time. Prints Markdown; exit 1 if any
request failed.
"""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST_BIN = ROOT / "target" / "release" / "host"
ECHO = ROOT / "target" / "release" / "libecho.so"
ROUNDS = int(os.environ.get("ROLLING_ROUNDS", "5"))
CLIENTS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, timeout: float = 2) -> int:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return 0


def wait_until(check, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


class Host:
    """One `host` (2 workers, echo) with an admin port; restartable on the same ports."""

    def __init__(self, name: str, tmp: Path):
        self.name, self.tmp = name, tmp
        self.port, self.admin = free_port(), free_port()
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        log = open(self.tmp / f"{self.name}-{self.starts}.log", "w")
        self.proc = subprocess.Popen(
            [str(HOST_BIN), "--bind", f"127.0.0.1:{self.port}", "--admin-bind", f"127.0.0.1:{self.admin}",
             "--workers", "2", "--no-static", f"{ECHO}:application"],
            stdout=subprocess.DEVNULL, stderr=log,
        )
        wait_until(lambda: get(self.admin, "/readyz") == 200, 30, f"{self.name} ready")

    def generation(self) -> int:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.admin, timeout=2)
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        except OSError:
            return -1
        for line in text.splitlines():
            if line.startswith("host_generation "):
                return int(float(line.split()[1]))
        return -1

    def swap(self) -> None:
        before = self.generation()
        self.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.generation() > before, 30, f"{self.name}'s swap")

    def restart(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        # Out of rotation first (the balancer sees /readyz 503), then drained.
        self.proc.wait(timeout=40)
        self.start()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Load:
    """CLIENTS threads on kept-alive connections, GET and POST, counting outcomes."""

    def __init__(self, port: int):
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.sent = 0
        self.failures: list[str] = []
        self.threads = [threading.Thread(target=self.client, args=(i,), daemon=True) for i in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def client(self, i: int) -> None:
        conn = None
        while not self.stop.is_set():
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if i % 2:
                    conn.request("POST", "/post", body=b"a=1&b=2")
                else:
                    conn.request("GET", "/get")
                response = conn.getresponse()
                response.read()
                ok = response.status == 200
                why = f"status {response.status}"
                if response.getheader("connection", "").lower() == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                ok, why = False, f"{type(e).__name__}: {e}"
                conn = None
            with self.lock:
                self.sent += 1
                if not ok:
                    self.failures.append(why)

    def finish(self) -> tuple[int, list[str]]:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=15)
        return self.sent, self.failures


NGINX = """
worker_processes 1;
error_log {tmp}/nginx-error.log;
pid {tmp}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
    uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
    upstream hosts {{
        server 127.0.0.1:{a};
        server 127.0.0.1:{b};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hosts;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
}}
"""

HAPROXY = """
global
    maxconn 1024
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    retries 3
    option redispatch
    option http-keep-alive
frontend web
    bind 127.0.0.1:{port}
    default_backend hosts
backend hosts
    option httpchk GET /readyz
    default-server inter 500ms fall 1 rise 2
    server a 127.0.0.1:{a} check port {admin_a}
    server b 127.0.0.1:{b} check port {admin_b}
"""


def scenario(name: str, balancer: list[str], port: int, hosts: list[Host], step) -> str:
    proc = subprocess.Popen(balancer, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: get(port, "/get") == 200, 20, f"{name} answering")
        load = Load(port)
        time.sleep(1)
        started = time.monotonic()
        for _ in range(ROUNDS):
            for host in hosts:
                step(host)
                time.sleep(1.0)  # both hosts serve again before the next one goes
        sent, failures = load.finish()
        took = time.monotonic() - started
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    shown = "; ".join(sorted(set(failures))[:5])
    return f"| {name} | {ROUNDS} × 2 | {took:.0f} s | {sent} | {len(failures)} | {shown} |"


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="rolling-"))
    hosts = [Host("a", tmp), Host("b", tmp)]
    rows = []
    try:
        for host in hosts:
            host.start()
        port = free_port()
        (tmp / "nginx.conf").write_text(NGINX.format(tmp=tmp, a=hosts[0].port, b=hosts[1].port, port=port))
        rows.append(scenario("nginx, rolling hot swaps", ["nginx", "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                             port, hosts, Host.swap))
        port = free_port()
        (tmp / "haproxy.cfg").write_text(HAPROXY.format(port=port, a=hosts[0].port, b=hosts[1].port,
                                                        admin_a=hosts[0].admin, admin_b=hosts[1].admin))
        rows.append(scenario("HAProxy + /readyz, rolling restarts", ["haproxy", "-f", str(tmp / "haproxy.cfg")],
                             port, hosts, Host.restart))
    finally:
        for host in hosts:
            host.stop()
    print(f"Two hosts (2 workers each) behind a balancer, {CLIENTS} kept-alive clients (GET and POST):\n")
    print("| scenario | rounds | took | requests | failed | failures |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row)
    print(f"\nlogs: {tmp}")
    return 1 if any(row.split("|")[5].strip() != "0" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
