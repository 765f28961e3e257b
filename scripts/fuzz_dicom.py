#!/usr/bin/env python
"""Fuzz medsight.io.read with mutated real DICOM files (run by hand, not in CI).

Seeds are real DICOM files from ../shared/data (pydicom samples, one LIDC CT slice, one
PGBM MR slice) plus copies made here: JPEG 2000, JPEG-LS and RLE versions of MR_small, an
enhanced multi-frame CT of three LIDC slices, and a two-segment DICOM SEG on MR_small. Hypothesis draws
mutations: byte flips, overwritten runs, inserted and deleted bytes, truncation, and
header-aware changes (Rows, Columns, BitsAllocated, NumberOfFrames, SamplesPerPixel,
PhotometricInterpretation, transfer syntax, element lengths). Every case is read with
``medsight.io.read``; the only acceptable outcomes are an Image or a MedSightError.

Anything else is a finding: another exception type, a hang (``--case-timeout``), or a dead
worker process (a crash in a C decoder). Findings are saved with their input under
``--out``; a JSON summary is written at the end.

Usage:
    nice -n 10 python scripts/fuzz_dicom.py --seconds 600 --out /tmp/medsight-fuzz
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("MEDSIGHT_SHARED_DATA", REPO.parent / "shared" / "data"))


def seeds(tmp: Path) -> list[bytes]:
    import numpy as np
    import pydicom
    from pydicom.uid import JPEG2000Lossless, JPEGLSLossless, RLELossless

    files = [DATA / "pydicom_testfiles" / n for n in ("CT_small.dcm", "MR_small.dcm", "MR_small_RLE.dcm")]
    files += sorted((DATA / "lidc_idri_nodule_slabs").rglob("*.dcm"))[:1]
    files += sorted((DATA / "brain_tumor_progression").rglob("*.dcm"))[:1]
    out = [f.read_bytes() for f in files if f.is_file()]
    if not out:
        sys.exit(f"no seed files under {DATA}")
    base = pydicom.dcmread(DATA / "pydicom_testfiles" / "MR_small.dcm")
    for ts in (JPEG2000Lossless, JPEGLSLossless, RLELossless):
        ds = pydicom.dcmread(DATA / "pydicom_testfiles" / "MR_small.dcm")
        try:
            ds.compress(ts, np.asarray(base.pixel_array))
        except Exception as exc:  # an encoder plugin may be missing
            print(f"no {ts.name} seed: {exc}", file=sys.stderr)
            continue
        p = tmp / f"seed-{ts.name[:10]}.dcm"
        ds.save_as(p, enforce_file_format=True)
        out.append(p.read_bytes())
    out += derived_seeds(tmp)
    return out


def derived_seeds(tmp: Path) -> list[bytes]:
    """An enhanced multi-frame CT (3 LIDC slices) and a DICOM SEG on MR_small, built with
    highdicom, so that the multi-frame and SEG readers are fuzzed too."""
    import highdicom as hd
    import numpy as np
    import pydicom

    out = []
    lidc = sorted((DATA / "lidc_idri_nodule_slabs").rglob("*.dcm"))[:3]
    try:
        legacy = [pydicom.dcmread(f) for f in lidc]
        enhanced = hd.legacy.LegacyConvertedEnhancedCTImage(
            legacy_datasets=legacy, series_instance_uid=hd.UID(), series_number=1, sop_instance_uid=hd.UID(),
            instance_number=1)
        enhanced.save_as(tmp / "seed-enhanced.dcm", enforce_file_format=True)
        out.append((tmp / "seed-enhanced.dcm").read_bytes())
    except Exception as exc:
        print(f"no enhanced seed: {exc}", file=sys.stderr)
    try:
        from medsight.io.dicom_out import Algorithm, build_seg

        mr = pydicom.dcmread(DATA / "pydicom_testfiles" / "MR_small.dcm")
        mask = np.zeros((1, int(mr.Rows), int(mr.Columns)), np.uint8)
        mask[0, 10:30, 12:40] = 1
        mask[0, 40:50, 40:50] = 2
        seg = build_seg([mr], mask, {1: "A", 2: "B"}, algorithm=Algorithm("fuzz", "0"))
        seg.save_as(tmp / "seed-seg.dcm", enforce_file_format=True)
        out.append((tmp / "seed-seg.dcm").read_bytes())
    except Exception as exc:
        print(f"no SEG seed: {exc}", file=sys.stderr)
    return out


HEADER_KEYWORDS = ("Rows", "Columns", "BitsAllocated", "BitsStored", "NumberOfFrames", "SamplesPerPixel",
                   "PixelRepresentation", "PlanarConfiguration", "RescaleSlope", "ImageOrientationPatient",
                   "ImagePositionPatient", "PixelSpacing")


def header_mutation(data: bytes, keyword: str, value: int) -> bytes:
    """Set one header value through pydicom (an out-of-range integer, a zero, a huge value)."""
    import io

    import pydicom

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if keyword in ("RescaleSlope",):
            ds.RescaleSlope = str(value)[:16]
        elif keyword in ("ImageOrientationPatient", "ImagePositionPatient", "PixelSpacing"):
            n = 2 if keyword == "PixelSpacing" else (6 if keyword.startswith("ImageO") else 3)
            setattr(ds, keyword, [str(value % 7 - 3)] * n)
        elif keyword == "NumberOfFrames":
            ds.NumberOfFrames = value
        else:
            setattr(ds, keyword, value % 65536)
        buf = io.BytesIO()
        ds.save_as(buf)
        return buf.getvalue()
    except Exception:
        return data  # the mutation itself failed: fuzz the original bytes


def mutate(data: bytes, draw) -> bytes:
    from hypothesis import strategies as st

    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "overwrite", "insert", "delete", "truncate", "header", "length"]))
        pos = draw(st.integers(0, max(0, len(buf) - 1)))
        if op == "flip" and buf:
            buf[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=16))
            buf[pos:pos + len(chunk)] = chunk
        elif op == "insert":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif op == "delete":
            del buf[pos:pos + draw(st.integers(1, 256))]
        elif op == "truncate":
            del buf[pos:]
        elif op == "header":
            kw = draw(st.sampled_from(HEADER_KEYWORDS))
            value = draw(st.one_of(st.integers(-2, 70000), st.sampled_from([0, 1, 3, 7, 12, 33, 65535, 2**31 - 1])))
            buf = bytearray(header_mutation(bytes(buf), kw, value))
        elif op == "length" and len(buf) > 140:
            # set a 2- or 4-byte little-endian length field after a tag to something wrong
            at = draw(st.integers(132, len(buf) - 4))
            buf[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\xfe\xff\xff\x7f", b"\x00\x00\x00\x00",
                                                   b"\x10\x00\x00\x00"]))
    return bytes(buf)


class CaseTimeout(Exception):
    pass


def worker(out: Path, seconds: float, case_timeout: int, start_count: int) -> None:
    """Run cases until time is up; append one JSON line per non-image outcome class."""
    import logging
    import warnings

    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    import medsight.io as mio
    from medsight.errors import MedSightError

    warnings.simplefilter("ignore")
    logging.disable(logging.CRITICAL)
    tmp = Path(tempfile.mkdtemp(prefix="medsight-fuzz-"))
    seed_data = seeds(tmp)
    case_path = out / "current.dcm"
    counts: Counter[str] = Counter()
    deadline = time.monotonic() + seconds
    findings = out / "findings.jsonl"

    def on_alarm(*_):
        raise CaseTimeout()

    signal.signal(signal.SIGALRM, on_alarm)

    @settings(max_examples=200, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def one_case(data):
        seed = data.draw(st.integers(0, len(seed_data) - 1))
        blob = mutate(seed_data[seed], data.draw)
        case_path.write_bytes(blob)
        signal.alarm(case_timeout)
        try:
            mio.read(case_path)
            counts["image"] += 1
        except MedSightError as exc:
            counts[type(exc).__name__] += 1
        except CaseTimeout:
            counts["HANG"] += 1
            _save(out, blob, "hang", f"no answer within {case_timeout} s", findings)
        except BaseException as exc:  # noqa: BLE001 - this is what the fuzzer looks for
            if isinstance(exc, KeyboardInterrupt):
                raise
            counts["CRASH " + type(exc).__name__] += 1
            _save(out, blob, type(exc).__name__, traceback.format_exc(), findings)
        finally:
            signal.alarm(0)

    while time.monotonic() < deadline:
        try:
            one_case()  # 200 cases per call
        except Exception as exc:  # hypothesis' own complaints must not end the run
            counts["hypothesis " + type(exc).__name__] += 1
        (out / f"counts-{start_count}.json").write_text(json.dumps(counts))


def _save(out: Path, blob: bytes, kind: str, detail: str, findings: Path) -> None:
    n = len(list(out.glob("finding-*.dcm")))
    p = out / f"finding-{n:04d}-{kind}.dcm"
    p.write_bytes(blob)
    with open(findings, "a") as f:
        f.write(json.dumps({"file": p.name, "kind": kind, "detail": detail[-2000:]}) + "\n")


def supervise(args: argparse.Namespace) -> int:
    """Restart the worker when it dies (a crash in native code) and keep the case that killed it."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for f in list(out.glob("counts-*.json")) + list(out.glob("finding-*")) + [out / "findings.jsonl"]:
        f.unlink(missing_ok=True)
    start = time.monotonic()
    deaths = 0
    run = 0
    while (left := args.seconds - (time.monotonic() - start)) > 1:
        proc = subprocess.run([sys.executable, __file__, "--worker", "--seconds", str(left), "--out", str(out),
                               "--case-timeout", str(args.case_timeout), "--run", str(run)], check=False)
        if proc.returncode != 0:
            deaths += 1
            blob = (out / "current.dcm").read_bytes() if (out / "current.dcm").exists() else b""
            _save(out, blob, f"worker-died-{proc.returncode}", "the worker process died", out / "findings.jsonl")
        run += 1
    total: Counter[str] = Counter()
    for f in out.glob("counts-*.json"):
        total.update(json.loads(f.read_text()))
    summary = {"seconds": round(time.monotonic() - start, 1), "cases": sum(total.values()) + deaths,
               "outcomes": dict(total.most_common()), "worker_deaths": deaths,
               "findings": sum(1 for _ in open(out / "findings.jsonl")) if (out / "findings.jsonl").exists() else 0}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    return 1 if summary["findings"] else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=600.0, help="how long to fuzz (default 600)")
    ap.add_argument("--out", default=str(Path(tempfile.gettempdir()) / "medsight-fuzz"), help="findings folder")
    ap.add_argument("--case-timeout", type=int, default=20, help="seconds before a case counts as a hang")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--run", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(Path(args.out), args.seconds, args.case_timeout, args.run)
        return 0
    return supervise(args)


if __name__ == "__main__":
    sys.exit(main())
