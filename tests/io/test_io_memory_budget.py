"""A memory budget per image: what a header declares is checked against byte budgets before
anything is decoded; pictures (heatmaps, overlays, Secondary Captures) are capped in size and
uint8. Nothing here decodes a big image: the big files are small (RLE, PNG headers)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pydicom
import pytest

import medsight.io as mio
from medsight.errors import ImageTooLargeError
from medsight.io import dicom_pixels
from medsight.io.limits import DEFAULT_LIMITS, ReadLimits
from support.big_dicom import rle_cr
from support.facts import says
from support.xray_dicom import xray_dataset


@pytest.fixture
def no_decoding(monkeypatch):
    """Make any decoding of DICOM pixel data fail the test."""
    def refuse(*_a, **_k):
        raise AssertionError("pixel data was decoded")
    monkeypatch.setattr(dicom_pixels, "_decode", refuse)


def test_a_24000_square_rle_cr_is_refused_from_its_header_naming_the_budget(tmp_path, no_decoding):
    path = rle_cr(tmp_path / "big.dcm", 24000, 24000, patient_id="P")
    assert path.stat().st_size < 10_000_000  # 576 M pixels in about 9 MB
    with pytest.raises(ImageTooLargeError) as e:
        mio.read(path)
    text = str(e.value)
    assert "24000x24000" in text and "576,000,000 bytes" in text and "max_frame_bytes" in text
    assert "MEDSIGHT_MAX_FRAME_BYTES" in text and "\n" not in text
    with pytest.raises(ImageTooLargeError, match="max_frame_bytes"):  # the receiver's check: headers only
        dicom_pixels.check_pixel_header(pydicom.dcmread(path))


def test_the_whole_image_budget_counts_every_frame(tmp_path, no_decoding):
    ds = pydicom.dcmread(rle_cr(tmp_path / "mf.dcm", 512, 512, bits=16, patient_id="P"))
    ds.NumberOfFrames, ds.BitsAllocated = 1100, 32  # 288 M pixels (under max_pixels), 1.15 GB declared
    with pytest.raises(ImageTooLargeError, match="max_decoded_bytes") as info:
        dicom_pixels.check_pixel_header(ds)
    says(info, "1,153,433,600", "max_decoded_bytes")  # the size it would take, and the limit to raise


def test_real_sizes_pass_the_default_budgets():
    from medsight.io.limits import check_decoded_size

    check_decoded_size((1, 4096, 4096, 1), 2, DEFAULT_LIMITS, frame=(4096, 4096, 1))  # DX, 16 bit: 32 MiB
    check_decoded_size((600, 512, 512), 4, DEFAULT_LIMITS)  # CT series stacked in float32 HU: 629 MB
    check_decoded_size((1, 8192, 8192, 1), 2, DEFAULT_LIMITS, frame=(8192, 8192, 1))  # the frame budget itself
    ds = xray_dataset(np.zeros((4096, 4096), np.uint8), patient_id="P")
    assert dicom_pixels.check_pixel_header(ds)["rows"] == 4096


def test_budgets_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("MEDSIGHT_MAX_FRAME_BYTES", "1000")
    monkeypatch.setenv("MEDSIGHT_MAX_DECODED_BYTES", "5000")
    limits = ReadLimits.from_env()
    assert (limits.max_frame_bytes, limits.max_decoded_bytes) == (1000, 5000)
    path = rle_cr(tmp_path / "small.dcm", 40, 40, patient_id="P")  # 1600 bytes a frame
    with pytest.raises(ImageTooLargeError, match="over the budget of 1,000 bytes"):
        mio.read(path)  # what medsight predict and batch inference call


def _png_header(width: int, height: int, bit_depth: int = 8) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b"")


def test_a_png_under_the_pixel_limit_but_over_the_frame_budget_is_refused_before_decoding(tmp_path):
    (tmp_path / "wide.png").write_bytes(_png_header(20000, 20000))  # 400 M pixels: under max_pixels (600 M)
    with pytest.raises(ImageTooLargeError, match="max_frame_bytes"):
        mio.read(tmp_path / "wide.png")
    (tmp_path / "deep.png").write_bytes(_png_header(9000, 9000, 16))  # 81 M pixels, 162 MB at 16 bits
    with pytest.raises(ImageTooLargeError, match="162,000,000 bytes"):
        mio.read(tmp_path / "deep.png")


def test_a_big_npy_is_refused_by_bytes_not_only_by_count(tmp_path):
    arr = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float64, shape=(300, 512, 512))
    del arr  # 78.6 M voxels (under max_pixels), 629 MB in float64: over a 512 MiB budget
    with pytest.raises(ImageTooLargeError, match="max_decoded_bytes"):
        mio.read(tmp_path / "v.npy", limits=ReadLimits(max_decoded_bytes=512 * 2**20))


# -- pictures ---------------------------------------------------------------------------------


def test_the_overlay_of_a_big_image_is_capped_and_uint8():
    from medsight.explain import overlay
    from medsight.io.image import Image

    img = Image(array=np.full((1, 4000, 3000), 100, np.uint16), spacing=(0.1, 0.1), meta={"window": [100, 200]})
    heat = np.zeros((4000, 3000), np.float32)
    heat[:2000] = 1.0
    rgb = overlay(img, heat)
    assert rgb.shape == (2000, 1500, 3) and rgb.dtype == np.uint8
    assert (rgb[:900] != 128).any(axis=-1).all() and (rgb[1100:] == 128).all()  # the hot half coloured, in place
    assert overlay(img, heat[::2, ::2]).shape == (2000, 1500, 3)  # a map already at the picture's size


def test_the_overlay_is_unchanged_for_images_within_the_cap():
    from matplotlib import colormaps

    from medsight.explain import overlay
    from medsight.io.image import Image

    img = Image(array=np.full((1, 30, 40), 100, np.uint16), spacing=(1, 1), meta={"window": [100, 200]})
    heat = np.linspace(0, 1, 30 * 40, dtype=np.float32).reshape(30, 40)
    weight = (0.45 * np.clip((heat - 0.2) / 0.8, 0, 1))[..., None]
    colours = colormaps["jet"](heat)[..., :3]  # the float colormap of the code before the cap
    expected = ((128 / 255 * (1 - weight) + colours * weight) * 255).round()
    assert np.abs(overlay(img, heat).astype(int) - expected).max() <= 1


def test_a_heatmap_of_a_big_image_is_made_at_the_picture_size():
    import torch.nn as nn

    from medsight.explain import heatmap
    from medsight.io.image import Image
    from medsight.models.saved import SavedModel

    net = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model = SavedModel(network=net, manifest={
        "name": "t", "version": "1", "task": "classification", "architecture": {"spatial_dims": 2},
        "preprocessing": {"spatial_size": [28, 28], "channels": 1, "intensity": "minmax"},
        "labels": ["a", "b"], "positive_index": 1})
    img = Image(array=np.random.default_rng(0).integers(0, 255, (1, 4100, 2050)).astype(np.uint8), spacing=(1, 1))
    h = heatmap(model, img)
    assert h.values.shape == (1367, 684) and h.values.dtype == np.float32  # 4100/3, 2050/3 rounded up


def test_a_label_overlay_of_a_big_slice_is_capped():
    from medsight.explain.overlay import label_overlay
    from medsight.io.image import Image

    labels = np.zeros((1, 5000, 5000), np.uint8)
    labels[0, 1000:2000, 1000:2000] = 1
    rgb, _ = label_overlay(Image(array=np.zeros((1, 5000, 5000), np.uint8), spacing=(1, 1)), labels[0])
    assert rgb.shape == (1667, 1667, 3) and rgb.dtype == np.uint8


def test_a_big_secondary_capture_is_capped_with_its_spacing_scaled():
    from medsight.io.dicom_out import Algorithm, build_sc

    source = xray_dataset(np.zeros((4000, 4000), np.uint8), patient_id="P")
    source.PixelSpacing = [0.1, 0.1]
    sc = build_sc(source, np.zeros((4000, 4000, 3), np.uint8), algorithm=Algorithm("t", "1"))
    assert (sc.Rows, sc.Columns) == (2000, 2000) and len(sc.PixelData) == 2000 * 2000 * 3  # 12 MB, not 48 MB
    assert [float(v) for v in sc.PixelSpacing] == [0.2, 0.2]
    small = build_sc(source, np.zeros((2000, 2000, 3), np.uint8), algorithm=Algorithm("t", "1"))
    assert [float(v) for v in small.PixelSpacing] == [0.2, 0.2]  # an overlay already at the picture size


def test_medsight_predict_refuses_the_24000_square_cr_within_a_1_5_gib_address_space(tmp_path):
    """The issue's case end to end, in a subprocess capped by RLIMIT_AS (before: 7.7 GB peak)."""
    import json
    import os
    import resource
    import subprocess
    import sys
    from pathlib import Path

    from support.xray_dicom import write_xray

    bomb = rle_cr(tmp_path / "bomb.dcm", 24000, 24000, patient_id="P")
    good = write_xray(tmp_path / "good.dcm", np.full((28, 28), 90, np.uint8), patient_id="P")

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (int(1.5 * 2**30), int(1.5 * 2**30)))

    out = tmp_path / "out.json"
    exe = Path(sys.executable).parent / "medsight"
    proc = subprocess.run([str(exe), "predict", "--model", "pneumonia-xray", str(good), str(bomb), "--json", str(out)],
                          capture_output=True, text=True, preexec_fn=cap, env=dict(os.environ, COLUMNS="300"),
                          timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # one input failed; no crash, no MemoryError
    rows = {Path(r["input"]).name: r for r in json.loads(out.read_text())}
    assert rows["good.dcm"]["label"] in ("normal", "pneumonia", "refer")  # a flat image may be referred
    assert rows["bomb.dcm"]["error_type"] == "ImageTooLargeError" and "max_frame_bytes" in rows["bomb.dcm"]["error"]
