"""The service's memory budget per image: the receiver checks headers and never decodes a
whole image; a damaged compressed stream is found by the worker, which records an error
result and goes on; overlays are capped. (The 24000x24000 CR's peak memory is measured in
benchmarks/bench_memory.py, not here.)"""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from sqlalchemy import select
from tests.service.conftest import dicom_bytes, drain

from medsight.errors import RefusedInputError
from medsight.io import dicom_pixels
from medsight.service.db import Result
from support.big_dicom import rle_constant_frame, rle_cr


@pytest.fixture
def big_ctx(make_cfg, tmp_path):
    """A service context accepting instances up to 16 MB (the 24000x24000 RLE CR is 9 MB)."""
    from medsight.service.context import build_context

    c = build_context(make_cfg(storage={"path": str(tmp_path / "data"), "max_instance_mb": 16}))
    yield c
    c.db.dispose()


def test_the_receiver_refuses_a_declared_24000_square_cr_without_decoding_it(big_ctx, tmp_path, monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("the receiver decoded pixel data")

    monkeypatch.setattr(dicom_pixels, "_decode", refuse)
    data = rle_cr(tmp_path / "big.dcm", patient_id="PID-CANARY-7").read_bytes()
    with pytest.raises(RefusedInputError) as e:
        big_ctx.ingestor.ingest(data, actor="dicom:BIG")
    assert e.value.code == "too_large" and "max_frame_bytes" in str(e.value)


def _damaged_rle(tmp_path, **kw) -> bytes:
    ds = pydicom.dcmread(rle_cr(tmp_path / "ok.dcm", 64, 64, **kw))
    frame = rle_constant_frame(64, 64, 100)
    ds.PixelData = pydicom.encaps.encapsulate([frame[:len(frame) // 2]])  # the stream stops half way
    ds["PixelData"].is_undefined_length = True
    return dicom_bytes(ds)


def test_damaged_compressed_pixels_are_stored_and_the_worker_records_an_error_then_goes_on(big_ctx, tmp_path, xray):
    bad = _damaged_rle(tmp_path, patient_id="PID-CANARY-7")
    assert big_ctx.ingestor.ingest(bad, actor="dicom:CR").status == "stored"  # headers are fine
    good, good_bytes = xray()
    drain(big_ctx)
    assert big_ctx.ingestor.ingest(good_bytes, actor="dicom:CR").status == "stored"
    drain(big_ctx)
    bad_uid = pydicom.dcmread(io.BytesIO(bad)).SOPInstanceUID
    with big_ctx.db.read() as s:
        results = {r.sop_uid: r for r in s.scalars(select(Result))}
    assert results[bad_uid].status == "error"
    assert "cannot read the stored instance" in results[bad_uid].error and "RLE" in results[bad_uid].error
    assert "\n" not in results[bad_uid].error
    assert results[good.SOPInstanceUID].status == "ok"


def test_the_overlay_of_a_large_x_ray_is_stored_capped(big_ctx, xray_large):
    ds, data = xray_large
    assert big_ctx.ingestor.ingest(data, actor="dicom:CR").status == "stored"
    drain(big_ctx)
    with big_ctx.db.read() as s:
        r = s.scalar(select(Result))
    from PIL import Image as PILImage

    assert r.status == "ok"
    with PILImage.open(r.overlay_path) as im:
        assert im.size == (1500, 2000) and im.mode == "RGB"  # 3000x4000 source: longest side 2048 at most


@pytest.fixture
def xray_large(rng):
    from support.xray_dicom import xray_dataset

    ds = xray_dataset(rng.integers(0, 255, (4000, 3000)).astype(np.uint8), patient_id="PID-CANARY-7")
    return ds, dicom_bytes(ds)


def test_a_batch_of_big_images_is_predicted_in_parts_within_the_image_budget(big_ctx, xray, monkeypatch):
    from medsight.service.inference import Inference

    monkeypatch.setenv("MEDSIGHT_MAX_DECODED_BYTES", "2000")  # two 28x28 8-bit images (784 bytes each) at a time
    sizes = []
    predict = Inference._predict

    def spy(self, model_name, items, t_claim):
        sizes.append(sum(image.array.nbytes for _, image, _ in items))
        return predict(self, model_name, items, t_claim)

    monkeypatch.setattr(Inference, "_predict", spy)
    for _ in range(5):
        assert big_ctx.ingestor.ingest(xray()[1], actor="dicom:CR").status == "stored"
    drain(big_ctx)  # batch_size 8: the five jobs are claimed together
    with big_ctx.db.read() as s:
        assert [r.status for r in s.scalars(select(Result))] == ["ok"] * 5
    assert sizes == [1568, 1568, 784]
