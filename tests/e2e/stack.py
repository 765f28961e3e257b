"""The end-to-end stack: real Orthanc (DICOMweb, Lua auto-routing), optional real
PostgreSQL, and ``medsight serve`` as a subprocess, all on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from support.peers import Orthanc, free_port

SERVICE_AET = "MEDSIGHT"
MANUFACTURER = "MedSight"  # outputs.manufacturer: written into every result object
TOKENS = {"admin": "e2e-admin-token", "reader": "e2e-reader-token", "sender": "e2e-sender-token"}

ROUTE_LUA = """
function OnStoredInstance(instanceId, tags, metadata, origin)
  -- results come back from MedSight's own AE (C-STORE) or by STOW-RS, where Orthanc's origin
  -- names no user ({"RequestOrigin": "Plugins"}), so they are known by their Manufacturer:
  -- never send them round again
  if origin["RemoteAet"] == "%(aet)s" or tags["Manufacturer"] == "%(manufacturer)s" then return end
  local ok, err = pcall(SendToModality, instanceId, "medsight")
  if not ok then print("route to MedSight failed; catch-up will fetch " .. instanceId) end
end
"""


#: Orthanc processes told to exit at the end of their module; reaped by :func:`reap_orthancs`
_EXITING: list[subprocess.Popen] = []


def reap_orthancs(timeout: float = 15.0) -> None:
    """Wait for the Orthancs of the finished modules to exit (SIGKILL one that does not)."""
    while _EXITING:
        proc = _EXITING.pop()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Webhook:
    """A webhook receiver collecting JSON bodies."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                n = int(self.headers.get("content-length") or 0)
                hook.bodies.append(json.loads(self.rfile.read(n) or b"{}"))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def close(self) -> None:
        self.server.shutdown()


class ServiceProcess:
    """``medsight serve`` in its own process group, with its log in ``workdir/service.log``."""

    def __init__(self, workdir: Path, config: dict[str, Any]) -> None:
        self.workdir = workdir
        self.config = config
        self.config_path = workdir / "service.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "service.log"
        self.proc: subprocess.Popen | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.config['http']['port']}"

    @property
    def dicom_port(self) -> int:
        return int(self.config["dicom"]["port"])

    def start(self, timeout: float = 120.0) -> ServiceProcess:
        import httpx

        log = open(self.log_path, "ab")
        exe = Path(sys.executable).parent / "medsight"
        self.proc = subprocess.Popen([str(exe), "serve", "--config", str(self.config_path), "--verbose"],
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                     env=dict(os.environ))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"medsight serve exited ({self.proc.returncode}); see {self.log_path}")
            try:
                r = httpx.get(self.http + "/health/ready", timeout=2)
                if r.status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"medsight serve not ready after {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        """SIGKILL the whole process group (service and its workers), as a crash would."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str, role: str = "admin", **kw: Any) -> Any:
        import httpx

        return httpx.get(self.http + path, headers={"Authorization": f"Bearer {TOKENS[role]}"}, timeout=30, **kw)


class Stack:
    """Orthanc + (PostgreSQL) + MedSight for one test module."""

    def __init__(self, workdir: Path, *, model: str, db_url: str | None, webhook_url: str,
                 overrides: Callable[[Stack], dict[str, Any]] | None = None) -> None:
        self.workdir = workdir
        self.service_port = free_port()
        self.http_port = free_port()
        self.orthanc = Orthanc(workdir / "orthanc", modalities={"medsight": (SERVICE_AET, "127.0.0.1",
                                                                              self.service_port)},
                               lua=ROUTE_LUA % {"aet": SERVICE_AET, "manufacturer": MANUFACTURER})
        self.db_url = db_url
        self.model = model
        self.webhook_url = webhook_url
        self.overrides = overrides
        self.service: ServiceProcess | None = None

    def config(self) -> dict[str, Any]:
        """The service config: the shared e2e config, with a module's sections replaced by its
        ``stack_overrides(stack)``."""
        cfg = self._base_config()
        cfg.update(self.overrides(self) if self.overrides else {})
        return cfg

    def _base_config(self) -> dict[str, Any]:
        o = self.orthanc
        return {
            "database": {"url": self.db_url},
            "storage": {"path": str(self.workdir / "medsight-data"), "max_instance_mb": 4},
            "dicom": {"ae_title": SERVICE_AET, "port": self.service_port,
                      "allowed_calling_aets": ["ORTHANC", "STORESCU", "E2ESCU"]},
            "http": {"port": self.http_port, "max_upload_mb": 2, "public_url": f"http://127.0.0.1:{self.http_port}"},
            "auth": {"tokens": [{"name": f"e2e-{r}", "role": r, "token": t} for r, t in TOKENS.items()]},
            # a send to a just-stopped Orthanc can hang until its timeout_s before the association
            # is lost; its worker renews the lease meanwhile, so the other output thread does not
            # take (and send) it a second time. The SIGKILLed service's leases are released at its
            # restart, so a long lease costs the tests nothing
            "workers": {"processes": 1, "threads": 1, "output_threads": 2, "batch_size": 16, "lease_s": 30,
                        "retry_backoff_s": 0.5},
            "series": {"complete_after_s": 2, "sweep_interval_s": 0.5},
            "models": {"pneumonia-xray": {"path": self.model}, "lung-nodule-ct": {"path": "lung-nodule-ct"},
                       "hippocampus-mri": {"path": "hippocampus-mri", "explain": "none"}},
            "routing": [{"name": "chest-xray", "modalities": ["CR", "DX"], "body_parts": ["CHEST"],
                         "models": ["pneumonia-xray"]},
                        {"name": "chest-ct", "modalities": ["CT"], "body_parts": ["CHEST"],
                         "models": ["lung-nodule-ct"]},
                        {"name": "hippocampus-mr", "modalities": ["MR"], "body_parts": ["HEAD", "BRAIN"],
                         "series_description": "HIPPO", "models": ["hippocampus-mri"]}],
            "outputs": {"dicom": [{"name": "orthanc", "ae_title": o.aet, "port": o.dicom_port}],
                        "manufacturer": MANUFACTURER},
            "alerts": {"webhook": {"url": self.webhook_url},
                       "rules": [{"name": "pneumonia-positive", "kind": "above_threshold", "model": "pneumonia-xray",
                                  "priority": "high"}]},
            "catchup": {"source": "orthanc", "url": o.url, "username": o.user, "password": o.password,
                        "interval_s": 3},
            "viewer": {"dicomweb_url": f"{o.url}/dicom-web", "username": o.user, "password": o.password},
            "log_level": "INFO",
        }

    def database(self) -> Any:
        """A connection to the service's database (SQLite file or PostgreSQL)."""
        from medsight.service.db import Database

        return Database(self.db_url or f"sqlite:///{self.workdir / 'medsight-data' / 'medsight.db'}")

    def start(self) -> Stack:
        self.orthanc.start()
        self.service = ServiceProcess(self.workdir, self.config()).start()
        return self

    def stop(self) -> None:
        """Stop the service (and wait for it), then tell Orthanc to exit: it takes ~2.5 s to, and
        the next module's stack, on its own ports and folders, need not wait for that."""
        if self.service is not None:
            self.service.stop()
        _EXITING[:] = [p for p in _EXITING if p.poll() is None]  # reap those that have exited
        proc = self.orthanc.proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            _EXITING.append(proc)
        self.orthanc.proc = None
