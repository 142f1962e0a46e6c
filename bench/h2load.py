"""TLS and HTTP/2 load for the benchmark: a test certificate made with
openssl, nginx's lines for serving TLS and h2 with it, and h2load runs
(nghttp2's load generator: HTTP/2, or HTTP/1.1 with --h1) parsed into
numbers.

Standard library only; everything listens on 127.0.0.1.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate and key for 127.0.0.1."""

    certfile: Path
    keyfile: Path


def nginx_tls_lines(cert: Certificate) -> str:
    """nginx's server lines for TLS with `cert`, and a fixed /hello (nginx
    runs no app: its `return` is the fastest answer it has, the floor for
    an app)."""
    return f"""\
        ssl_certificate {cert.certfile};
        ssl_certificate_key {cert.keyfile};
        ssl_protocols TLSv1.2 TLSv1.3;
        location = /hello {{
            default_type text/plain;
            return 200 "Hello world!";
        }}
"""


def make_certificate(folder: Path) -> Certificate:
    """An ECDSA P-256 certificate (what most sites serve), valid one day."""
    cert = Certificate(folder / "bench.crt", folder / "bench.key")
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(cert.keyfile), "-out", str(cert.certfile),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert


@dataclass
class H2loadResult:
    """One h2load run's totals."""

    requests: int
    succeeded: int
    failed: int
    errored: int
    seconds: float


def run(url: str, *, http1: bool, connections: int, streams: int, seconds: float) -> H2loadResult:
    """h2load on one thread for `seconds`: `streams` requests in flight per
    connection over HTTP/2, one over HTTP/1.1 (h2load does not pipeline)."""
    argv = [
        "h2load", "-t", "1", "-c", str(connections), "-m", str(1 if http1 else streams),
        "-D", f"{round(seconds * 1000)}ms", *(["--h1"] if http1 else []), url,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    return parse(done.stdout, argv)


def parse(text: str, argv: list[str]) -> H2loadResult:
    """The totals in h2load's report; ValueError naming the command if absent."""
    finished = re.search(r"finished in ([\d.]+)(m?s)", text)
    counts = re.search(
        r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored", text
    )
    if not finished or not counts:
        raise ValueError(f"h2load gave no report: {' '.join(argv)}\n{text[-2000:]}")
    seconds = float(finished.group(1)) / (1000 if finished.group(2) == "ms" else 1)
    total, succeeded, failed, errored = (int(g) for g in counts.groups())
    return H2loadResult(total, succeeded, failed, errored, seconds)
