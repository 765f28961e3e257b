"""Start real DICOM and database peers for tests, on 127.0.0.1 only.

* :class:`Orthanc` runs Debian's Orthanc (with the DICOMweb plugin) from a config in a temp
  folder. Orthanc 1.10 has no listen-address option, so it runs under an ``LD_PRELOAD`` shim
  (``scripts/peers/loopback_shim.c``, compiled on first use) that rewrites wildcard binds to
  loopback.
* :class:`Postgres` runs a throw-away PostgreSQL cluster as user ``postgres`` in a temp folder.

Both skip the calling test (``pytest.skip``) with the reason when the Debian package is not
installed (``make peers`` installs them).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SHIM_SRC = REPO / "scripts" / "peers" / "loopback_shim.c"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loopback_shim(build_dir: Path | None = None) -> Path:
    """Compile (once) and return the LD_PRELOAD loopback shim."""
    out = (build_dir or Path(os.environ.get("MEDSIGHT_BUILD_DIR", "/tmp/medsight-build"))) / "loopback_shim.so"
    if not out.exists() or out.stat().st_mtime < SHIM_SRC.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(out), str(SHIM_SRC), "-ldl"], check=True)
    return out


def _skip(reason: str) -> None:
    import pytest

    pytest.skip(reason)


class Orthanc:
    """A real Orthanc PACS for one test session.

    Args:
        workdir: folder for its storage, index and config.
        aet: Orthanc's AE title.
        modalities: ``{name: (aet, host, port)}`` Orthanc may send to / accept queries from.
        lua: text of a Lua script (auto-routing), or None.
        user, password: HTTP basic-auth credentials (authentication is on).
    """

    def __init__(self, workdir: Path, *, aet: str = "ORTHANC",
                 modalities: dict[str, tuple[str, str, int]] | None = None, lua: str | None = None,
                 user: str = "medsight", password: str = "medsight-test") -> None:
        self.workdir = Path(workdir)
        self.aet = aet
        self.modalities = modalities or {}
        self.lua = lua
        self.user, self.password = user, password
        self.http_port = free_port()
        self.dicom_port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def config(self) -> dict[str, Any]:
        plugin = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
        cfg: dict[str, Any] = {
            "Name": "medsight-test-orthanc",
            "StorageDirectory": str(self.workdir / "storage"),
            "IndexDirectory": str(self.workdir / "index"),
            "HttpPort": self.http_port,
            "DicomPort": self.dicom_port,
            "DicomAet": self.aet,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {self.user: self.password},
            "DicomModalities": {k: list(v) for k, v in self.modalities.items()},
            "DicomAlwaysAllowEcho": True,
            "DicomAlwaysAllowStore": True,
            "DicomCheckCalledAet": False,
            "StableAge": 2,
            "HttpTimeout": 30,
            "Plugins": [str(plugin)] if plugin.exists() else [],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "Host": f"127.0.0.1:{self.http_port}"},
        }
        if self.lua:
            script = self.workdir / "route.lua"
            script.write_text(self.lua)
            cfg["LuaScripts"] = [str(script)]
        return cfg

    def start(self, timeout: float = 20.0) -> Orthanc:
        exe = shutil.which("Orthanc")
        if exe is None:
            _skip("Orthanc is not installed (Debian package 'orthanc'; run `make peers`)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.workdir / "orthanc.json"
        cfg_path.write_text(json.dumps(self.config(), indent=1))
        env = dict(os.environ, LD_PRELOAD=str(loopback_shim()))
        log = open(self.workdir / "orthanc.log", "wb")
        self.proc = subprocess.Popen([exe, str(cfg_path)], stdout=log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited at start; see {self.workdir / 'orthanc.log'}")
            try:
                self.get("/system")
                return self
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("Orthanc did not answer within the timeout")

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> Orthanc:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- REST ----------------------------------------------------------------------------------
    def _request(self, method: str, path: str, data: bytes | None = None,
                 headers: dict[str, str] | None = None) -> bytes:
        import base64

        req = urllib.request.Request(self.url + path, data=data, method=method)
        token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        with urllib.request.urlopen(req, timeout=30) as r:  # noqa: S310 - loopback only
            return r.read()

    def get(self, path: str) -> Any:
        return json.loads(self._request("GET", path))

    def post(self, path: str, body: bytes, content_type: str = "application/dicom") -> Any:
        return json.loads(self._request("POST", path, body, {"Content-Type": content_type}))

    def upload(self, dicom_bytes: bytes) -> dict[str, Any]:
        """Store one DICOM instance over REST; returns Orthanc's answer (ID, Status...)."""
        return self.post("/instances", dicom_bytes)

    def file(self, orthanc_id: str) -> bytes:
        """The stored DICOM file of an instance."""
        return self._request("GET", f"/instances/{orthanc_id}/file")

    def instance_tags(self, orthanc_id: str) -> dict[str, Any]:
        return self.get(f"/instances/{orthanc_id}/simplified-tags")


class Postgres:
    """A throw-away PostgreSQL cluster on 127.0.0.1 (run as user postgres).

    The cluster lives in its own folder under /tmp (user postgres must be able to reach it,
    which pytest's private tmp_path does not allow); ``stop`` removes it.
    """

    def __init__(self, workdir: Path | None = None, *, port: int | None = None) -> None:
        import tempfile

        if workdir is None:
            workdir = Path(tempfile.mkdtemp(prefix="medsight-pg-"))
            os.chmod(workdir, 0o755)
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.data = self.workdir / "pgdata"
        self.sock = self.workdir / "sock"
        self.bin = self._bindir()

    @staticmethod
    def _bindir() -> Path | None:
        base = Path("/usr/lib/postgresql")
        if not base.is_dir():
            return None
        versions = sorted((p for p in base.iterdir() if (p / "bin" / "initdb").exists()), key=lambda p: p.name)
        return versions[-1] / "bin" if versions else None

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> Postgres:
        if self.bin is None:
            _skip("PostgreSQL server is not installed (Debian package 'postgresql'; run `make peers`)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.sock.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres")
            shutil.chown(self.sock, "postgres")
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l", str(self.workdir / "pg.log"), "-o",
                  f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.sock}", "start")
        return self

    def stop(self) -> None:
        if self.bin is not None and (self.data / "postmaster.pid").exists():
            self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast", "stop")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Postgres:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
