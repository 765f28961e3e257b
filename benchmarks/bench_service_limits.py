"""Benchmark of the service's limits under abuse (issue 8, findings 4 and 5), on 127.0.0.1 only.

Starts ``medsight serve`` (receiver and HTTP API, default limits: 64 MB bodies and instances,
1000 parts, 128 connections, 32 associations, ACSE timeout 5 s) and measures, sampling the
service process's resident memory (``/proc/<pid>/status`` VmRSS) every 10 ms:

1. **chunked upload**: a 200 MB ``multipart/form-data`` body sent with chunked transfer
   encoding (no Content-Length): the status, how much was sent before the answer, the time,
   and the service's peak RSS over its baseline;
2. **many-part STOW-RS**: 20,000 empty parts (1.2 MB), and 1,000 empty parts (at the limit,
   each one refused as not DICOM), while another thread asks ``/health`` every 20 ms: the
   status, the time, and the slowest ``/health`` answer during the request;
3. **silent connections**: 64 TCP connections that never send an A-ASSOCIATE-RQ, held open,
   then dcmtk's storescu sends one CR: its exit status and time;
4. **large C-STORE**: a 150 MB CR (over the 64 MB limit) by storescu: the DICOM status and the
   service's peak RSS over its baseline.

Usage:
    .venv/bin/python benchmarks/bench_service_limits.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from e2e.helpers import storescu  # noqa: E402
from e2e.stack import TOKENS, ServiceProcess  # noqa: E402
from support.peers import free_port  # noqa: E402
from support.xray_dicom import write_xray  # noqa: E402

AUTH = {"Authorization": f"Bearer {TOKENS['sender']}"}


class RssSampler:
    """Peak VmRSS of one process, sampled every 10 ms while in the ``with`` block."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def __enter__(self) -> RssSampler:
        self.base = self.peak = self.rss()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join()

    @property
    def added_mb(self) -> float:
        return (self.peak - self.base) / 1e6


def chunked_upload(port: int, total_mb: int = 200) -> dict:
    """Send a chunked multipart/form-data body over a raw socket; stop when the answer comes."""
    boundary = "bench-boundary"
    head = (f"POST /api/v1/instances HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH['Authorization']}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    part = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"big.dcm\"\r\n"
            "Content-Type: application/dicom\r\n\r\n").encode()
    block = b"\0" * (1 << 20)
    sent, answer = 0, b""
    t0 = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head)
        try:
            for chunk in [part] + [block] * total_mb + [f"\r\n--{boundary}--\r\n".encode()]:
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
                sent += len(chunk)
                s.setblocking(False)
                try:
                    answer = s.recv(65536)
                except BlockingIOError:
                    pass
                s.setblocking(True)
                if answer:
                    break
            else:
                s.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        s.settimeout(30)
        while b"\r\n\r\n" not in answer:
            more = s.recv(65536)
            if not more:
                break
            answer += more
    status = int(answer.split()[1]) if answer.startswith(b"HTTP/") else None
    return {"status": status, "sent_mb": round(sent / 1e6, 1), "seconds": round(time.perf_counter() - t0, 2)}


def stow_with_health(base: str, n_parts: int) -> dict:
    import httpx

    boundary = "bench-boundary"
    body = b"".join(f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n\r\n".encode()
                    for _ in range(n_parts)) + f"--{boundary}--\r\n".encode()
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}', **AUTH}
    worst, done = [0.0], threading.Event()

    def poll() -> None:
        with httpx.Client(timeout=30) as c:
            while not done.is_set():
                t = time.perf_counter()
                c.get(base + "/health")
                worst[0] = max(worst[0], time.perf_counter() - t)
                time.sleep(0.02)

    th = threading.Thread(target=poll, daemon=True)
    th.start()
    time.sleep(0.2)
    t0 = time.perf_counter()
    r = httpx.post(base + "/dicom-web/studies", content=body, headers=headers, timeout=600)
    seconds = time.perf_counter() - t0
    time.sleep(0.1)
    done.set()
    th.join()
    return {"parts": n_parts, "body_mb": round(len(body) / 1e6, 2), "status": r.status_code,
            "seconds": round(seconds, 3), "health_max_ms": round(worst[0] * 1000, 1)}


def silent_connections(port: int, xray: Path, n: int = 64) -> dict:
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(n)]
    try:
        t0 = time.perf_counter()
        out = storescu(port, [xray], aet="STORESCU", timeout=60)
        return {"silent_connections": n, "storescu_rc": out.returncode, "seconds": round(time.perf_counter() - t0, 3)}
    finally:
        for c in held:
            c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="medsight-bench-limits-") as tmp:
        work = Path(tmp)
        dicom_port, http_port = free_port(), free_port()
        cfg = {"roles": ["receiver", "api"], "storage": {"path": str(work / "data")},
               "dicom": {"port": dicom_port, "allowed_calling_aets": ["STORESCU"]},
               "http": {"port": http_port},
               "auth": {"tokens": [{"name": f"bench-{r}", "role": r, "token": t} for r, t in TOKENS.items()]},
               "log_level": "WARNING"}
        service = ServiceProcess(work, cfg).start()
        pid = service.proc.pid
        results: dict = {}
        try:
            with RssSampler(pid) as m:
                results["chunked_upload_200mb"] = {**chunked_upload(http_port), "rss_added_mb": round(m.added_mb, 1)}
            print("chunked upload:", results["chunked_upload_200mb"], flush=True)
            for n in (20_000, 1_000):
                results[f"stow_{n}_parts"] = stow_with_health(service.http, n)
                print("STOW:", results[f"stow_{n}_parts"], flush=True)
            small = write_xray(work / "small.dcm", np.zeros((256, 256), np.uint8), patient_id="BENCH-1")
            results["silent_connections"] = silent_connections(dicom_port, small)
            print("silent connections:", results["silent_connections"], flush=True)
            side = 12248  # 150 MB of 8-bit pixels
            big = write_xray(work / "big.dcm", np.zeros((side, side), np.uint8), patient_id="BENCH-2")
            with RssSampler(pid) as m:
                t0 = time.perf_counter()
                out = storescu(dicom_port, [big], aet="STORESCU", timeout=300)
                seconds = time.perf_counter() - t0
            status = "0xA700 (Refused: Out of resources)" if "OutOfResources" in out.stdout + out.stderr else \
                f"storescu rc {out.returncode}"
            results["cstore_150mb_over_limit"] = {"file_mb": round(big.stat().st_size / 1e6, 1), "status": status,
                                                  "seconds": round(seconds, 2), "rss_added_mb": round(m.added_mb, 1)}
            print("150 MB C-STORE:", results["cstore_150mb_over_limit"], flush=True)
        finally:
            service.stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
