"""``medsight serve``: start the parts of the service this process runs.

By default one process runs everything: the DICOM receiver, the HTTP API, the catch-up loop
and a supervisor that keeps ``workers.processes`` worker processes alive (restarting any that
die). With PostgreSQL, more machines can run more workers: give them a config with
``roles: [worker]`` and the same database URL.

SIGTERM or SIGINT stop everything gracefully: the receiver stops accepting, workers finish
their batch. A SIGKILL loses nothing either: acknowledged instances are on disk and in the
database, and the jobs of a killed worker are handed out again: at once when the supervisor
sees its worker process die, or when the service starts and finds leases held by processes of
this host that no longer exist; otherwise (another machine) when their lease expires.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from pathlib import Path
from typing import Any

from medsight.service.config import ServiceConfig, load_service_config, service_config_from_dict

__all__ = ["serve", "Service", "dead_local_workers"]

log = logging.getLogger(__name__)

#: the service's files are readable by its group (a backup or PACS-export account), never by others
UMASK = 0o027


def dead_local_workers(names: set[str], *, this_process_too: bool = False) -> list[str]:
    """The ``host:pid:`` prefixes of the worker names (``host:pid:thread``) whose process on
    this host no longer exists; with ``this_process_too`` this process's own as well (a
    previous run's, e.g. pid 1 in a container, when it has not started any worker yet)."""
    host, dead = socket.gethostname(), set()
    for name in names:
        parts = name.rsplit(":", 2)
        if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            if this_process_too:
                dead.add(f"{host}:{pid}:")
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            dead.add(f"{host}:{pid}:")
        except PermissionError:  # alive, another user's
            pass
    return sorted(dead)


def _worker_process(cfg_data: dict[str, Any], parent_pid: int, log_level: str, ready: Any = None) -> None:
    """Entry point of a worker process: run worker threads until told to stop or orphaned.

    ``ready`` (a multiprocessing Event) is set once the models are loaded and warmed up and
    the threads run; the service's readiness check waits for it.
    """
    from medsight.service.logs import configure_logging

    configure_logging(log_level, fmt="%(asctime)s %(levelname)s %(name)s [worker %(process)d] %(message)s")
    from medsight.service.worker import run_workers

    cfg = service_config_from_dict(cfg_data)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threads = run_workers(cfg, stop)  # returns once every configured model is loaded and warmed up
    if ready is not None:
        ready.set()
    log.info("worker process ready (%d thread(s))", len(threads))
    while not stop.is_set():
        if os.getppid() != parent_pid:  # the service was killed: do not linger as an orphan
            log.warning("service process %d is gone; worker exiting", parent_pid)
            stop.set()
            break
        stop.wait(0.5)
    for t in threads:
        t.join(timeout=30)


class Service:
    """A running service (what :func:`serve` starts; tests and benchmarks use it directly).

    Args:
        cfg: the validated config.
    """

    def __init__(self, cfg: ServiceConfig) -> None:
        self.cfg = cfg
        self.stop_event = threading.Event()
        self.ctx: Any = None
        self.receiver: Any = None
        self.http_server: Any = None
        self._threads: list[threading.Thread] = []
        self._procs: list[Any] = []
        self._ready: list[Any] = []  # one multiprocessing Event per worker process

    def start(self) -> Service:
        """Start every role except the HTTP server's blocking loop (see :meth:`run`)."""
        from medsight.service.catchup import Catchup
        from medsight.service.context import build_context
        from medsight.service.scp import DicomReceiver

        cfg = self.cfg
        self.ctx = build_context(cfg)
        log.info("database: %s; storage: %s", "SQLite" if self.ctx.db.is_sqlite else "PostgreSQL", cfg.storage.path)
        from medsight.service.queue import leased_workers

        self._release(dead_local_workers(leased_workers(self.ctx.db), this_process_too=True))
        if "receiver" in cfg.roles and cfg.dicom.enabled:
            self.receiver = DicomReceiver(cfg.dicom, self.ctx.ingestor).start()
            self.ctx.checks["dicom_receiver"] = lambda: self.receiver is not None and self.receiver._server is not None
        if "catchup" in cfg.roles and cfg.catchup.source != "none":
            catchup = Catchup(cfg.catchup, self.ctx.db, self.ctx.ingestor)
            self.ctx.catchup = catchup.run_once
            self._thread(catchup.run_forever, "medsight-catchup")
        if "worker" in cfg.roles:
            if cfg.workers.processes == 0:  # threads here: models are loaded before start() returns
                from medsight.service.worker import run_workers

                workers = run_workers(cfg, self.stop_event)
                self._threads += workers
                self.ctx.checks["workers"] = lambda: all(t.is_alive() for t in workers)
            else:
                for _ in range(cfg.workers.processes):
                    p, ready = self._spawn()
                    self._procs.append(p)
                    self._ready.append(ready)
                self._thread(self._supervise, "medsight-supervisor")
                self.ctx.checks["workers"] = self.workers_ready
        return self

    def workers_ready(self) -> bool:
        """True when every worker process is alive and has loaded and warmed up its models."""
        procs, ready = list(self._procs), list(self._ready)
        return bool(procs) and all(p.is_alive() and r.is_set() for p, r in zip(procs, ready))

    def _thread(self, target: Any, name: str) -> None:
        t = threading.Thread(target=target, args=(self.stop_event,), name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _spawn(self) -> tuple[Any, Any]:
        ctx = mp.get_context("spawn")
        ready = ctx.Event()
        p = ctx.Process(target=_worker_process, args=(self.cfg.model_dump(mode="json"), os.getpid(),
                                                      self.cfg.log_level, ready), daemon=False, name="medsight-worker")
        p.start()
        log.info("started worker process %d", p.pid)
        return p, ready

    def _supervise(self, stop: threading.Event) -> None:
        while not stop.wait(1.0):
            for i, p in enumerate(self._procs):
                if not p.is_alive() and not stop.is_set():
                    log.warning("worker process %d exited with %s; starting another", p.pid, p.exitcode)
                    self._release([f"{socket.gethostname()}:{p.pid}:"])  # its jobs need not wait out their lease
                    # the new process is not ready until it has loaded its models
                    self._procs[i], self._ready[i] = self._spawn()

    def _release(self, prefixes: list[str]) -> None:
        """Hand out again at once the jobs of dead worker processes (``host:pid:`` prefixes)."""
        from medsight.service.queue import release_workers

        try:
            release_workers(self.ctx.db, prefixes, max_attempts=self.cfg.workers.max_attempts)
        except Exception:  # noqa: BLE001 - the database briefly unreachable: their leases will expire
            log.exception("could not release the jobs of dead worker processes")

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT: the HTTP API in this thread when the ``api`` role is on."""
        if "api" in self.cfg.roles and self.cfg.http.enabled:
            import uvicorn

            from medsight.service.app import create_app

            # uvicorn (>= 0.29) shuts down on SIGTERM/SIGINT, restores the handlers it found and
            # raises the signal again: with the default handlers that kills this process before
            # stop() below (workers not stopped, receiver not closed). Handlers of our own make
            # the re-raised signal end run() normally.
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop_event.set())

            # log_config None: uvicorn's records go to this process's one-line handler, not to
            # handlers of its own that print tracebacks with their exceptions' texts
            config = uvicorn.Config(create_app(self.ctx), host=self.cfg.http.host, port=self.cfg.http.port,
                                    log_level="warning", access_log=False, lifespan="off", log_config=None)
            self.http_server = uvicorn.Server(config)
            self.http_server.run()  # returns on SIGTERM / SIGINT
        else:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, lambda *_: self.stop_event.set())
            while not self.stop_event.wait(0.5):
                pass
        self.stop()

    def stop(self) -> None:
        """Stop every part (idempotent)."""
        self.stop_event.set()
        if self.http_server is not None:
            self.http_server.should_exit = True
        if self.receiver is not None:
            self.receiver.stop()
            self.receiver = None
        for p in self._procs:
            if p.is_alive():
                p.terminate()
        for p in self._procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
        self._procs, self._ready = [], []
        for t in self._threads:
            t.join(timeout=10)
        log.info("service stopped")


def serve(config_path: str | Path) -> None:
    """Start the service from a ``service.yaml`` and run until interrupted.

    Sets the process umask to :data:`UMASK` and writes one-line log records to stderr
    (:mod:`medsight.service.logs`).

    Raises:
        ConfigError: the config is invalid.
    """
    from medsight.service.logs import configure_logging

    cfg = load_service_config(config_path)
    os.umask(UMASK)  # before any file is made: storage, database, overlays, masks; worker processes inherit it
    configure_logging(None if logging.getLogger().handlers else cfg.log_level)
    logging.getLogger("medsight").setLevel(cfg.log_level)
    t0 = time.perf_counter()
    service = Service(cfg).start()
    log.info("MedSight service started in %.1f s (roles: %s; DICOM %s:%d; HTTP %s:%d)", time.perf_counter() - t0,
             ", ".join(cfg.roles), cfg.dicom.host, cfg.dicom.port, cfg.http.host, cfg.http.port)
    service.run()
