#!/usr/bin/env python
"""I/O benchmarks: the cost of reading one CT slice, and the memory of reading a 300-slice series.

1. Slice: ``medsight.io.read`` of one real uncompressed 512x512 LIDC CT slice against pydicom's
   own ``dcmread`` + ``pixel_array`` of the same file (medsight also sniffs the content, checks
   for truncation and the pixel length, applies the rescale to HU as float32 and builds the
   Image). Runs alternate between the two; the medians are compared. Target: <= 1.5x.
2. Series: a 300-slice series made from the real LIDC-IDRI-0001 slices (pixels and headers
   copied; positions and UIDs renumbered, 2.5 mm apart) is read in a fresh process with
   ``tracemalloc`` on. Reported: the volume's own size (float32 HU), the peak of traced
   allocations during the read, and the growth of the process' maximum resident set.
   Target: peak close to the volume's size.

Results go to benchmarks/results/io.json and, as a table, to stdout (copied into the "I/O"
section of docs/benchmarks.md).

Usage:
    nice -n 10 python benchmarks/bench_io.py [--repeats 300] [--slices 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))


def lidc_slices() -> list[Path]:
    files = sorted((DATA / "lidc_idri_nodule_slabs" / "LIDC-IDRI-0001").rglob("*.dcm"))
    if not files:
        sys.exit(f"LIDC-IDRI-0001 not found under {DATA}")
    return files


def bench_slice(repeats: int) -> dict[str, float]:
    import pydicom

    import medsight.io as mio

    path = lidc_slices()[len(lidc_slices()) // 2]
    for _ in range(10):  # warm caches and imports
        _ = pydicom.dcmread(path).pixel_array
        mio.read(path)
    ours, theirs = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        _ = pydicom.dcmread(path).pixel_array
        theirs.append(time.perf_counter() - t)
        t = time.perf_counter()
        mio.read(path)
        ours.append(time.perf_counter() - t)
    p, m = statistics.median(theirs) * 1000, statistics.median(ours) * 1000
    return {"file_bytes": path.stat().st_size, "pydicom_ms": round(p, 3), "medsight_ms": round(m, 3),
            "ratio": round(m / p, 3), "repeats": repeats}


def make_series(folder: Path, n: int) -> None:
    import pydicom
    from pydicom.uid import generate_uid

    sources = [pydicom.dcmread(f) for f in lidc_slices()]
    series_uid = generate_uid()
    z0 = float(sources[0].ImagePositionPatient[2])
    for k in range(n):
        ds = sources[k % len(sources)]
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z0 + 2.5 * k]
        ds.InstanceNumber = k + 1
        ds.save_as(folder / f"{(k * 7919) % n:05d}.dcm")  # names unrelated to position


def measure_series(folder: str, traced: bool) -> None:
    """Run in a fresh process: read the folder, print JSON with the memory figures.

    With ``traced``, tracemalloc records the peak of Python/NumPy allocations (and slows the
    read down); without it, the wall time and the growth of the maximum resident set are taken.
    """
    import resource
    import tracemalloc

    import medsight.io as mio

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if traced:
        tracemalloc.start()
    t = time.perf_counter()
    image = mio.read(folder)
    seconds = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] if traced else 0
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    nbytes = image.array.nbytes
    print(json.dumps({"shape": list(image.shape), "dtype": str(image.array.dtype),
                      "volume_mb": round(nbytes / 2**20, 1),
                      "traced_peak_mb": round(peak / 2**20, 1), "peak_over_volume": round(peak / nbytes, 3),
                      "max_rss_growth_mb": round((rss1 - rss0) / 1024, 1), "read_s": round(seconds, 2)}))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--measure-series", help=argparse.SUPPRESS)
    ap.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure_series:
        measure_series(args.measure_series, traced=args.traced)
        return 0
    s = bench_slice(args.repeats)
    with tempfile.TemporaryDirectory(prefix="medsight-bench-") as tmp:
        make_series(Path(tmp), args.slices)
        runs = []
        for traced in (True, False):
            cmd = [sys.executable, __file__, "--measure-series", tmp] + (["--traced"] if traced else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        m = {**runs[0], "max_rss_growth_mb": runs[1]["max_rss_growth_mb"], "read_s": runs[1]["read_s"]}
    results = {"slice": s, "series": m, "load_average": os.getloadavg()}
    out = REPO / "benchmarks" / "results" / "io.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print()
    print("| measurement | medsight | reference | ratio | target |")
    print("|---|---|---|---|---|")
    print(f"| read one 512x512 CT slice (real LIDC, uncompressed, median of {s['repeats']}) | {s['medsight_ms']} ms "
          f"| pydicom dcmread + pixel_array {s['pydicom_ms']} ms | {s['ratio']}x | <= 1.5x |")
    print(f"| read a {m['shape'][0]}-slice series (LIDC slices renumbered), traced peak | {m['traced_peak_mb']} MB | "
          f"volume {m['volume_mb']} MB ({m['dtype']}) | {m['peak_over_volume']}x | close to 1x |")
    print(f"| same read untraced: growth of max RSS; wall time | {m['max_rss_growth_mb']} MB; {m['read_s']} s | "
          f"volume {m['volume_mb']} MB | {round(m['max_rss_growth_mb'] / m['volume_mb'], 3)}x | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
