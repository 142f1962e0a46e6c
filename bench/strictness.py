#!/usr/bin/env python3
"""Replays the HTTP vector corpus (host/tests/data/http-vectors) against
the host, nginx and gunicorn on 127.0.0.1 and reports, vector by vector,
who served and who refused it, against the corpus's strict verdict. Run it
through `bench/strictness`, which installs nginx and gunicorn and builds
first. Writes host/tests/data/http-vectors/COMPARISON.md.

A server "refuses" a vector when it answers a 4xx/5xx it made itself or
closes without answering; otherwise it "serves". As in
host/tests/strict_http.rs, a 405 or 501 to a vector to accept counts as
serving a well-formed request the server does not implement (a CONNECT),
and a 408 to one marked [incomplete] as waiting for a body that never
came.
Standard library only.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "host" / "tests" / "data" / "http-vectors"
OUT = CORPUS / "COMPARISON.md"
HOST_BIN = ROOT / "target" / "release" / "host"
ECHO = ROOT / "target" / "release" / "libecho.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


def exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.settimeout(4)
        try:
            s.sendall(data)
        except OSError:
            pass
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
        return out


def statuses(raw: bytes) -> list[tuple[int, bool]]:
    """(status, made by the app) per response; the app's are JSON (host) or
    carry the X-Served-By marker (nginx, gunicorn)."""
    found = []
    for head in re.finditer(rb"HTTP/1\.[01] (\d{3})[^\r\n]*\r\n((?:[^\r\n]+\r\n)*)\r\n", raw):
        status = int(head.group(1))
        if 100 <= status < 200:
            continue
        fields = head.group(2).lower()
        by_app = b"application/json" in fields or b"x-served-by: app" in fields
        found.append((status, by_app))
    return found


def verdict(answers: list[tuple[int, bool]], expected: str, note: str) -> str:
    if not answers:
        return "refuse"
    for status, by_app in answers:
        if by_app or status < 400 or (expected == "accept" and status in (405, 501)):
            continue
        if status == 408 and "[incomplete]" in note:
            continue
        return "refuse"
    return "serve"


GUNICORN_APP = '''
def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain"), ("X-Served-By", "app")])
    return [b"ok"]
'''

NGINX_CONF = """
worker_processes 1;
error_log {dir}/error.log;
pid {dir}/nginx.pid;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {dir};
    proxy_temp_path {dir};
    fastcgi_temp_path {dir};
    uwsgi_temp_path {dir};
    scgi_temp_path {dir};
    client_header_timeout 2s;
    client_body_timeout 2s;
    server {{
        listen 127.0.0.1:{port};
        location / {{
            add_header X-Served-By app;
            return 200 "ok";
        }}
    }}
}}
"""


def main() -> None:
    vectors = []
    for line in (CORPUS / "INDEX.tsv").read_text().splitlines()[1:]:
        fields = line.split("\t")
        vectors.append((fields[0], fields[2], fields[3] if len(fields) > 3 else "", (CORPUS / fields[0]).read_bytes()))
    servers: dict[str, int] = {}
    procs = []
    tmp = Path(tempfile.mkdtemp(prefix="strictness-"))
    port = free_port()
    procs.append(
        subprocess.Popen(
            [str(HOST_BIN), "--bind", f"127.0.0.1:{port}", "--no-static", "--workers", "1",
             "--header-timeout", "2s", "--body-timeout", "1s", "--access-log-format", "off", f"{ECHO}:application"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
        )
    )
    servers["host"] = port
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if Path(nginx).exists():
        port = free_port()
        (tmp / "nginx.conf").write_text(NGINX_CONF.format(dir=tmp, port=port))
        procs.append(subprocess.Popen([nginx, "-c", str(tmp / "nginx.conf"), "-g", "daemon off;"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        servers["nginx"] = port
    if shutil.which("gunicorn"):
        port = free_port()
        (tmp / "wsgiapp.py").write_text(GUNICORN_APP)
        procs.append(subprocess.Popen(["gunicorn", "--chdir", str(tmp), "-b", f"127.0.0.1:{port}", "-w", "1",
                                       "--timeout", "5", "wsgiapp:app"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        servers["gunicorn"] = port
    try:
        for port in servers.values():
            wait_port(port)
        results: dict[str, list[str]] = {}
        for name, port in servers.items():
            with concurrent.futures.ThreadPoolExecutor(32) as pool:
                answers = list(pool.map(lambda v: statuses(exchange(port, v[3])), vectors))
            results[name] = [verdict(a, v[1], v[2]) for a, v in zip(answers, vectors)]
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(tmp, ignore_errors=True)

    names = list(servers)
    lines = [
        "# The vector corpus against the host and its peers",
        "",
        f"Made by `bench/strictness` on {time.strftime('%Y-%m-%d')}: {len(vectors)} vectors; "
        "'as expected' means served when the INDEX says accept, refused when it says reject.",
        "",
        "| server | as expected | served a vector to reject (more lenient) | refused a vector to accept (stricter) |",
        "|---|---|---|---|",
    ]
    for name in names:
        got = results[name]
        ok = sum(1 for g, v in zip(got, vectors) if (g == "serve") == (v[1] == "accept"))
        lenient = [v[0] for g, v in zip(got, vectors) if g == "serve" and v[1] == "reject"]
        strict = [v[0] for g, v in zip(got, vectors) if g == "refuse" and v[1] == "accept"]
        lines.append(f"| {name} | {ok} | {len(lenient)} | {len(strict)} |")
    for name in names[:1]:
        got = results[name]
        lines += ["", f"## Where {name} differs from the corpus", ""]
        lines += [f"- `{v[0]}` (expected {v[1]}, {name} {g}s it): {v[2][:140]}"
                  for g, v in zip(got, vectors) if (g == "serve") != (v[1] == "accept")]
    for peer in names[1:]:
        host_only = [v for g, p, v in zip(results["host"], results[peer], vectors) if g == "refuse" and p == "serve"]
        peer_only = [v for g, p, v in zip(results["host"], results[peer], vectors) if g == "serve" and p == "refuse"]
        lines += ["", f"## host vs {peer}", "",
                  f"Refused by the host, served by {peer} ({len(host_only)}):", ""]
        lines += [f"- `{v[0]}` ({v[1]}): {v[2][:140]}" for v in host_only]
        lines += ["", f"Served by the host, refused by {peer} ({len(peer_only)}):", ""]
        lines += [f"- `{v[0]}` ({v[1]}): {v[2][:140]}" for v in peer_only]
    OUT.write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:6 + len(names)]))
    print(f"written: {OUT}")


if __name__ == "__main__":
    sys.exit(main())
