"""Benchmark: a whole chest CT through the nodule detector on this machine's CPUs.

The scan (synthetic): ``make_chest_ct`` at 300x512x512 (0.7x0.7x1.0 mm by default; an adult
chest), written as a 300-file DICOM CT series (int16, HU + 1024 via RescaleIntercept). In a fresh
process, timed stage by stage: reading the series (``medsight.io.read``), the lung mask, crop and
resampling to the network grid, the network's sliding window, and the candidates and findings;
then the process's peak RSS. The issue's target: read + mask + detect <= 60 s with peak RSS <= 6 GB
on 2 cores.

Usage:
    .venv/bin/python benchmarks/bench_detect_ct.py [--model lung-nodule-ct] [--json benchmarks/results/detect_ct.json]
        [--slices 300] [--size 512] [--threads 2] [--seed 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def write_ct_series(folder: Path, image) -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    study, series, frame = generate_uid(), image.series_uid or generate_uid(), generate_uid()
    vol = image.array[0]
    sz, sy, sx = image.spacing
    for k in range(vol.shape[0]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID = "Bench^Synthetic", "BENCH-1"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.BodyPartExamined = "CT", 1, k + 1, "CHEST"
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.ImagePositionPatient = [float(image.origin[0]), float(image.origin[1]), float(image.origin[2] + k * sz)]
        ds.PixelSpacing, ds.SliceThickness = [float(sy), float(sx)], float(sz)
        ds.Rows, ds.Columns = vol.shape[1], vol.shape[2]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit, ds.PixelRepresentation = 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
        ds.PixelData = np.ascontiguousarray(vol[k].astype(np.int32) + 1024).astype(np.int16).tobytes()
        ds.save_as(folder / f"{k:04d}.dcm", enforce_file_format=True)


def measure(model_name: str, folder: str, threads: int) -> dict:
    import torch

    torch.set_num_threads(threads)
    from medsight.io import read
    from medsight.models.saved import load_model
    from medsight.tasks.detection.detect import detect
    from medsight.tasks.detection.task import DetectionTask

    model = load_model(model_name)
    task = DetectionTask()
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    image = read(folder)
    t1 = time.perf_counter()
    scan = task.prepare_image(model, image)
    t2 = time.perf_counter()
    found, _ = detect(model.run, scan, model.spec.detection)
    t3 = time.perf_counter()
    result = task.infer(model, [image])[0]  # the whole inference path again (crops, overlay, result)
    t4 = time.perf_counter()
    return {"read_s": round(t1 - t0, 2), "mask_crop_resample_s": round(t2 - t1, 2),
            "network_and_candidates_s": round(t3 - t2, 2), "read_mask_detect_s": round(t3 - t0, 2),
            "infer_again_s": round(t4 - t3, 2),
            "grid_shape": list(scan.x.shape[1:]),
            "lungs_found": bool(scan.lungs.found), "n_candidates": len(found), "n_findings": len(result.nodules),
            "rss_after_load_mb": round(rss0),
            "rss_peak_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lung-nodule-ct")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--measure", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(args.model, args.measure, args.threads)))
        return
    from medsight.data.synthetic_ct import make_chest_ct

    image, nodules, _ = make_chest_ct(args.seed, shape_zyx=(args.slices, args.size, args.size),
                                      spacing_zyx=(1.0, 0.7, 0.7))
    with tempfile.TemporaryDirectory() as tmp:
        write_ct_series(Path(tmp) / "series", image)
        del image
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--threads", str(args.threads),
                              "--measure", str(Path(tmp) / "series")], capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res.update({"shape": [args.slices, args.size, args.size], "spacing_mm": [1.0, 0.7, 0.7], "threads": args.threads,
                "model": args.model, "n_nodules_truth": len(nodules), "synthetic_seed": args.seed})
    print(json.dumps(res, indent=2))
    if args.json:
        args.json.write_text(json.dumps(res, indent=2) + "\n")


if __name__ == "__main__":
    main()
