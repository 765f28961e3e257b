"""The worker's inference reads stored DICOM through ``medsight.io.read``, the one reader
path: the image it predicts on records the stored files' paths (what a SEG or SR re-reads),
is named by its UID, and is the image ``medsight.io.read`` gives; heatmaps are made only for
models whose task can explain them."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select
from tests.service.conftest import drain, lidc_slab

from medsight.service.db import Instance, Result


def test_a_stored_instance_is_read_by_io_read_with_its_path_as_source_file(ctx, xray):
    from medsight.io import read
    from medsight.io.dicom_out import source_datasets
    from medsight.service.inference import read_stored

    ds, data = xray()
    ctx.ingestor.ingest(data, actor="http:test")
    with ctx.db.read() as s:
        inst = s.scalar(select(Instance))
    image = read_stored(inst.path, inst.sop_uid)
    assert image.meta["source_files"] == [inst.path] and image.source == inst.sop_uid
    np.testing.assert_array_equal(image.array, read(inst.path).array)
    (header,) = source_datasets(image)  # the headers a SEG or SR references are re-read from the path
    assert header.SOPInstanceUID == ds.SOPInstanceUID


def test_a_stored_series_is_read_by_io_read_with_every_slice_path(ctx, shared_data):
    from medsight.service.inference import read_stored

    for f in lidc_slab(shared_data):
        ctx.ingestor.ingest(f, actor="http:test")
    with ctx.db.read() as s:
        insts = list(s.scalars(select(Instance)))
    uid = insts[0].series_uid
    from pathlib import Path

    image = read_stored(Path(insts[0].path).parent, uid, series=uid)
    assert sorted(image.meta["source_files"]) == sorted(i.path for i in insts)
    by_path = {i.path: i.sop_uid for i in insts}
    assert [by_path[f] for f in image.meta["source_files"]] == list(image.sop_uids)  # array order kept
    assert image.source == uid


def test_an_unreadable_stored_instance_is_named_by_its_uid_not_its_storage_path(tmp_path):
    from medsight.errors import ImageReadError
    from medsight.service.inference import read_stored

    bad = tmp_path / "storage" / "1.2.3.dcm"
    bad.parent.mkdir()
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00UI\xff\xff")  # a header cut short
    with pytest.raises(ImageReadError) as err:
        read_stored(bad, "1.2.3")
    assert str(err.value).startswith("1.2.3: ") and str(tmp_path) not in str(err.value)


def test_no_heatmap_for_a_model_whose_task_does_not_explain_it(ctx, xray, monkeypatch):
    from medsight.tasks.base import get_task

    monkeypatch.setattr(type(get_task("classification")), "explain_methods", lambda self, model: ())
    ctx.ingestor.ingest(xray()[1], actor="http:test")
    drain(ctx)
    with ctx.db.read() as s:
        r = s.scalar(select(Result))
    assert r.status == "ok" and r.overlay_path is None and r.outputs["heatmap"] is None
    assert "explain_ms" not in r.timings
