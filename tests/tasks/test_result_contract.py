"""Contract tests over every result type and every registered writer: one output path.

A new result type fails here until results_factory gives an example of it; a new writer
format fails until CALLS says how it is called and what it must give back.
"""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
import results_factory as rf

from medsight.io import read
from medsight.io.dicom_out import Algorithm, source_datasets
from medsight.tasks.results import Artifact, Finding, Region, Result
from medsight.tasks.writers import OutputFolder, list_writers, writer_for


def _result_types(cls: type = Result) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_result_types(sub)}
    return out


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    return read(rf.ct_series(tmp_path_factory.mktemp("ct")))


@pytest.fixture(scope="module")
def examples(image):
    return rf.examples(image)


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
            assert isinstance(a, Artifact) and a.kind in ("mask", "overlay")
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


def _sr_numbers(ds) -> dict[str, tuple[float, str]]:
    out = {}
    for item in ds.ContentSequence:
        for sub in getattr(item, "ContentSequence", []):
            for m in getattr(sub, "ContentSequence", []):
                if m.ValueType == "NUM":
                    mv = m.MeasuredValueSequence[0]
                    out[m.ConceptNameCodeSequence[0].CodeMeaning] = (float(mv.NumericValue),
                                                                     mv.MeasurementUnitsCodeSequence[0].CodeValue)
    return out


def _json(w, r, image, tmp_path):
    assert w(r) == r.to_dict()


def _csv(w, r, image, tmp_path):
    row = w(r)
    assert set(row) <= {"input", *type(r).csv_columns(rf.model_for(r)), "error"} and row["input"] == r.input


def _db(w, r, image, tmp_path):
    row = w(r)
    assert set(row) == {"label", "score", "threshold", "positive", "outputs"}
    assert "provenance" not in row["outputs"] and "input" not in row["outputs"]
    json.dumps(row["outputs"])


def _sr(w, r, image, tmp_path):
    ds = w(r, source_datasets(image), algorithm=Algorithm("m", "1.0.0"), title="MedSight m")
    numbers = {f.display_name: (f.value, f.unit) for f in r.findings() if f.value is not None}
    if not r.findings():
        assert ds is None
        return
    assert ds.StudyInstanceUID == image.study_uid
    got = _sr_numbers(ds)
    assert set(got) == set(numbers)
    for name, (value, unit) in numbers.items():
        assert got[name] == (pytest.approx(value, abs=1e-3), unit)


def _nifti(w, r, image, tmp_path):
    path = w(r, tmp_path / "mask.nii.gz")
    back = read(path)
    assert back.same_geometry(r.mask) and np.array_equal(back.array, r.mask.array)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]  # written whole, no temporary left


def _seg(w, r, image, tmp_path):
    ds = w(r)  # the sources: the DICOM files the mask's image was read from
    assert [d.SegmentLabel for d in ds.SegmentSequence] == list(r.labels.values())
    refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in ds.PerFrameFunctionalGroupsSequence}
    assert refs <= set(image.sop_uids)
    empty = rf.segmentation(image)
    empty.mask = image.with_array(np.zeros((1, *image.shape), np.uint8))
    assert w(empty) is None  # no structure found: no SEG


CALLS = {"json": _json, "csv": _csv, "db": _db, "sr": _sr, "nifti": _nifti, "seg": _seg}


@pytest.mark.parametrize("registered", list_writers(), ids=lambda k: f"{k[0].__name__}-{k[1]}")
def test_writer_gives_what_its_format_promises(registered, examples, image, tmp_path):
    result_type, fmt = registered
    assert fmt in CALLS, f"say in CALLS how a {fmt!r} writer is called and checked"
    served = [r for t, rs in examples.items() for r in rs if issubclass(t, result_type)
              and writer_for(r, fmt) is writer_for(result_type, fmt)]
    assert served, f"no example result is served by the {fmt} writer of {result_type.__name__}"
    for i, r in enumerate(served):
        folder = tmp_path / str(i)
        folder.mkdir()
        CALLS[fmt](writer_for(r, fmt), r, image, folder)


def test_output_folder_writes_a_segmentation_as_nifti_and_seg_and_a_classification_as_nothing(examples, tmp_path):
    folder = OutputFolder(tmp_path / "out")
    (seg,) = examples[rf.SegmentationResult]
    (cls,) = examples[rf.ClassificationResult]
    first = folder.write(seg)
    again = folder.write(seg)  # the same input twice: a second name, nothing overwritten
    assert first is not None and first.name.endswith("_seg.nii.gz") and seg.output == str(again)
    assert again != first and again.name.startswith(first.name.removesuffix("_seg.nii.gz"))
    assert sorted(p.suffix for p in (tmp_path / "out").iterdir()) == [".dcm", ".dcm", ".gz", ".gz"]
    assert folder.write(cls) is None and "output" not in cls.to_dict()


def test_a_format_a_type_has_no_writer_for_is_a_clear_error_not_a_guess(examples):
    from medsight.errors import WriteError
    from medsight.tasks.writers import write

    (err,) = examples[rf.PredictionError]
    assert writer_for(err, "nifti") is None and writer_for(err, "no-such-format") is None
    with pytest.raises(WriteError, match="'nifti' writer; PredictionError has none"):
        write(err, "nifti", "x.nii.gz")
