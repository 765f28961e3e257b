"""Contract tests over every result type: one protocol (to_dict, findings, artifacts, CSV columns).

A new result type fails here until results_factory gives an example of it; the writers of every
type are checked in test_writer_contract.py.
"""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
import results_factory as rf

from medsight.tasks.results import Artifact, Finding, Region, Result


def _result_types(cls: type = Result) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_result_types(sub)}
    return out


TYPES = sorted(_result_types(), key=lambda t: t.__name__)


def test_every_result_type_has_an_example(examples):
    assert set(examples) == set(TYPES)


@pytest.mark.parametrize("result_type", TYPES, ids=lambda t: t.__name__)
def test_result_follows_the_protocol(result_type, examples):
    for r in examples[result_type]:
        d = r.to_dict()
        assert d["input"] == r.input
        json.dumps(d)  # JSON-ready: no arrays, no Images
        for f in r.findings():
            assert isinstance(f, Finding) and f.name and isinstance(f.unit, str)
            assert (f.value is not None and math.isfinite(f.value)) or f.text is not None
            assert f.region is None or (isinstance(f.region, Region) and len(f.region.center_mm) == 3)
            json.dumps(f.to_dict())
        for a in r.artifacts():
            assert isinstance(a, Artifact) and a.kind in ("mask", "overlay", "crop")
        columns = {"input", *result_type.csv_columns(rf.model_for(r)), "error"}
        assert set(r.csv_row()) <= columns and r.csv_row()["input"] == r.input
        headline, details = r.summary()
        assert isinstance(headline, str) and isinstance(details, str)
        assert r.ok is (result_type.__name__ != "PredictionError")


def test_segmentation_findings_are_the_volumes_per_structure_in_ml(examples):
    (seg,) = examples[rf.SegmentationResult]
    assert {f.name: (f.value, f.unit) for f in seg.findings()} == {
        f"volume_ml_{n}": (v, "mL") for n, v in seg.volumes_ml.items()}


def test_to_dict_never_copies_the_mask(image):
    big = image.with_array(np.zeros((1, 64, 256, 256), np.uint8))  # 4 MiB of voxels
    r = rf.segmentation(image)
    r.mask = big
    tracemalloc.start()
    try:
        r.to_dict()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < big.array.nbytes / 16, peak
