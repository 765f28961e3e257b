"""Benchmark of the memory budget per image: peak memory of ``medsight predict`` and of the
service's processes on huge images made small.

Images, generated in a temporary folder (never committed; tests/support/big_dicom.py):

* ``bomb``: an RLE Lossless CR declaring 24000x24000 8-bit pixels (576 M pixels, under the
  600 M pixel limit) in 9 MB; decoded it would be 576 MB, far over the 128 MiB frame budget;
* ``edge``: an RLE CR of 8192x8192 at 16 bits, exactly the frame budget (128 MiB decoded),
  the largest 16-bit 2D image accepted by default; ``edge8``: 11584x11584 at 8 bits, the
  largest 8-bit one (more pixels, so more float32 work for the same budget);
* ``dx``: an RLE DX of 4096x4096 at 16 bits (32 MiB decoded), a real detector size;
* ``damaged``: a 64x64 RLE CR whose stream stops half way (the receiver accepts its header,
  the worker must record an error and go on);
* ``good``: a 28x28 chest X-ray (tests/support/xray_dicom.py).

1. ``medsight predict --model pneumonia-xray`` on each image, in a subprocess; its peak RSS
   from ``wait4``'s rusage (``ru_maxrss``), under an address-space cap (``--cap-gb``, RLIMIT_AS)
   so that a regression cannot take the machine down.
2. ``medsight serve`` (SQLite, one worker process, no outputs) on loopback; the images are sent
   by C-STORE one after the other (bomb, damaged, dx, edge, edge8, good); then each result is awaited
   and the peak RSS of the service process (the receiver) and of its worker process is read
   from ``/proc/<pid>/status`` (``VmHWM``).

Targets (issue 8): predict on the bomb refuses with a one-line error or stays under 1.5 GB;
the receiver under 500 MB and the worker under 2 GB; the good instance after it gets its result.

Usage:
    .venv/bin/python benchmarks/bench_memory.py [--json benchmarks/results/memory.json] [--cap-gb 6]
        [--skip-service] [--images bomb ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from support.big_dicom import rle_constant_frame, rle_cr  # noqa: E402
from support.peers import free_port  # noqa: E402
from support.xray_dicom import write_xray  # noqa: E402

MB = 1e6


def make_images(folder: Path) -> dict[str, Path]:
    import numpy as np
    import pydicom
    from pydicom.encaps import encapsulate

    images = {"bomb": rle_cr(folder / "bomb.dcm", 24000, 24000, patient_id="BENCH-1"),
              "edge": rle_cr(folder / "edge.dcm", 8192, 8192, bits=16, value=1000, patient_id="BENCH-2"),
              "edge8": rle_cr(folder / "edge8.dcm", 11584, 11584, value=100, patient_id="BENCH-6"),
              "dx": rle_cr(folder / "dx.dcm", 4096, 4096, bits=16, value=1000, patient_id="BENCH-3", modality="DX")}
    ds = pydicom.dcmread(rle_cr(folder / "damaged.dcm", 64, 64, patient_id="BENCH-4"))
    frame = rle_constant_frame(64, 64, 100)
    ds.PixelData = encapsulate([frame[:len(frame) // 2]])
    ds["PixelData"].is_undefined_length = True
    ds.save_as(folder / "damaged.dcm", enforce_file_format=True)
    images["damaged"] = folder / "damaged.dcm"
    rng = np.random.default_rng(0)
    images["good"] = write_xray(folder / "good.dcm", rng.integers(0, 255, (28, 28)).astype(np.uint8),
                                patient_id="BENCH-5")
    return images


def _cap(gb: float):
    def apply() -> None:
        limit = int(gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return apply


def predict_peak(path: Path, cap_gb: float) -> dict:
    """``medsight predict`` on one file: exit status, peak RSS (MB), seconds, its last output line."""
    exe = Path(sys.executable).parent / "medsight"
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe), "predict", "--model", "pneumonia-xray", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=_cap(cap_gb), env=dict(os.environ, COLUMNS="400"))
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    error = next((ln.strip("│ ") for ln in lines if "rror" in ln or "budget" in ln), None)
    return {"rc": proc.returncode, "peak_rss_mb": round(usage.ru_maxrss * 1024 / MB, 1),
            "seconds": round(time.perf_counter() - t0, 2), "error": error}


def _vm_hwm(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024 / MB
    return 0.0


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").iterdir():
            kids = (task / "children").read_text().split()
            out += [int(k) for k in kids]
            todo += [int(k) for k in kids]
    return out


def _send(port: int, path: Path) -> int:
    import pydicom
    from pynetdicom import AE

    ds = pydicom.dcmread(path)
    ae = AE(ae_title="BENCHSCU")
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="MEDSIGHT")
    if not assoc.is_established:
        raise SystemExit("association refused")
    try:
        st = assoc.send_c_store(ds)
        return int(st.Status) if st else -1
    finally:
        assoc.release()


def service_peaks(images: dict[str, Path], workdir: Path) -> dict:
    import pydicom
    from sqlalchemy import select

    from e2e.stack import ServiceProcess
    from medsight.service.db import Database, Result

    workdir.mkdir(parents=True, exist_ok=True)
    port, http = free_port(), free_port()
    cfg = {"storage": {"path": str(workdir / "data"), "max_instance_mb": 64},
           "dicom": {"port": port}, "http": {"port": http},
           "auth": {"tokens": [{"name": "bench", "role": "admin", "token": "bench-admin-token-0123456789"}]},
           "workers": {"processes": 1, "threads": 1, "batch_size": 16},
           "models": {"pneumonia-xray": {"path": "pneumonia-xray"}},
           "routing": [{"name": "xray", "modalities": ["CR", "DX"], "models": ["pneumonia-xray"]}],
           "log_level": "INFO"}
    service = ServiceProcess(workdir, cfg).start(timeout=300)
    out: dict = {"statuses": {}}
    try:
        pid = service.proc.pid
        base_receiver = _vm_hwm(pid)
        order = ["bomb", "damaged", "dx", "edge", "edge8", "good"]
        t0 = time.perf_counter()
        for name in order:
            out["statuses"][name] = hex(_send(port, images[name]))
        uids = {name: str(pydicom.dcmread(images[name], stop_before_pixels=True).SOPInstanceUID) for name in order}
        db = Database(f"sqlite:///{workdir / 'data' / 'medsight.db'}")
        want = {n: u for n, u in uids.items() if out["statuses"][n] == "0x0"}
        results: dict[str, Result] = {}
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and len(results) < len(want):
            with db.read() as s:
                results = {r.sop_uid: r for r in s.scalars(select(Result).where(Result.sop_uid.in_(want.values())))}
            time.sleep(0.5)
        out["seconds_to_last_result"] = round(time.perf_counter() - t0, 1)
        by_uid = {u: n for n, u in want.items()}
        out["results"] = {by_uid[u]: {"status": r.status, "error": r.error, "overlay": _size(r.overlay_path)}
                          for u, r in results.items()}
        db.dispose()
        kids = _descendants(pid)
        out["receiver_peak_rss_mb"] = round(_vm_hwm(pid), 1)
        out["receiver_peak_rss_at_start_mb"] = round(base_receiver, 1)
        out["worker_peak_rss_mb"] = round(max((_vm_hwm(k) for k in kids), default=0.0), 1)
    finally:
        service.stop()
    return out


def _size(path: str | None) -> list[int] | None:
    if not path:
        return None
    from PIL import Image as PILImage

    with PILImage.open(path) as im:
        return list(im.size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "memory.json")
    ap.add_argument("--cap-gb", type=float, default=6.0, help="RLIMIT_AS of each medsight predict")
    ap.add_argument("--skip-service", action="store_true")
    ap.add_argument("--images", nargs="+", default=["good", "dx", "edge", "edge8", "bomb"],
                    help="the images given to medsight predict")
    args = ap.parse_args()
    report: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        tmp_path = Path(tmp)
        images = make_images(tmp_path / "images")
        report["file_mb"] = {k: round(p.stat().st_size / MB, 2) for k, p in images.items()}
        report["predict"] = {k: predict_peak(images[k], args.cap_gb) for k in args.images}
        if not args.skip_service:
            report["service"] = service_peaks(images, tmp_path / "service")
    text = json.dumps(report, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
