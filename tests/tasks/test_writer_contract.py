"""Contract over every registered writer (:func:`medsight.tasks.writers.list_writers`, by result type
and format): each writes an example result of its type to a file, and the file reads back with the
field's own readers (json, csv, nibabel, pydicom/highdicom) holding what the result holds, in the
source's geometry and referencing the source.

A new writer format fails here until CALLS says how it is called and how its output is read back;
a new result type fails in test_result_contract.py until results_factory gives an example of it.
"""

from __future__ import annotations

import csv
import json

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import results_factory as rf

from medsight.io import read
from medsight.io.dicom_out import Algorithm, source_datasets, write_dicom
from medsight.io.dicom_out.sources import sort_like_series
from medsight.io.dicom_out.sr import on_nearest_slice, scoord_to_patient
from medsight.tasks.writers import OutputFolder, list_writers, write_csv, writer_for


def _plain_json(value):
    return json.loads(json.dumps(value))


def _json(w, r, image, tmp_path):
    path = tmp_path / "result.json"
    path.write_text(json.dumps(w(r), allow_nan=False))  # strict JSON: no NaN, no arrays, no numpy scalars
    back = json.loads(path.read_text())
    assert back == _plain_json(r.to_dict()) and back["input"] == r.input


def _csv(w, r, image, tmp_path):
    model = rf.model_for(r)
    path = write_csv([r], tmp_path / "results.csv", result_type=type(r), model=model)
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ["input", *type(r).csv_columns(model), "error"]
    assert len(rows) == len(r.csv_rows()) >= 1 and {row["input"] for row in rows} == {r.input}  # a row per finding
    row = w(r)  # one row: the first
    assert set(row) <= set(reader.fieldnames)
    assert {k: rows[0][k] for k in row} == {k: "" if v is None else str(v) for k, v in row.items()}


def _db(w, r, image, tmp_path):
    row = w(r)
    assert set(row) == {"label", "score", "threshold", "positive", "outputs"}
    assert "provenance" not in row["outputs"] and "input" not in row["outputs"]
    path = tmp_path / "outputs.json"  # the service stores ``outputs`` as a JSON column
    path.write_text(json.dumps(row["outputs"], allow_nan=False))
    assert json.loads(path.read_text()) == _plain_json(row["outputs"])


def _sr_groups(path) -> dict[str, dict]:
    """Each measurement group of an SR as highdicom reads it back: tracking identifier →
    numbers (meaning → (value, UCUM unit)), texts (meaning → value's meaning), finding type
    and site, its region (graphic type, data, frame of reference for an SCOORD3D) and the image
    an SCOORD is on."""
    content = hd.sr.srread(path).content
    out = {}
    for g in [*content.get_image_measurement_groups(), *content.get_planar_roi_measurement_groups()]:
        roi = getattr(g, "roi", None)
        texts = {q.name.meaning: q.value.meaning for q in g.get_qualitative_evaluations()}
        texts.pop("Geometric purpose of region", None)  # how the region is meant: checked below
        assert g.tracking_identifier not in out, f"two groups tracked as {g.tracking_identifier}"
        out[g.tracking_identifier] = {
            "uid": str(g.tracking_uid),
            "numbers": {m.name.meaning: (pytest.approx(m.value, abs=1e-3), m.unit.value) for m in g.get_measurements()},
            "texts": texts, "finding": None if g.finding_type is None else g.finding_type.meaning,
            "sites": [s.value.meaning for s in g.finding_sites],
            "centre": None if roi is None else (roi.graphic_type.value, [float(v) for v in np.ravel(roi.value)],
                                                str(getattr(roi, "frame_of_reference_uid", "") or "")),
            "on": None if roi is None or "ContentSequence" not in roi else  # an SCOORD's image
            str(roi.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID)}
    return out


def _expected_groups(r, title: str) -> dict[str, dict]:
    """What the SR of ``r`` must hold: one group of the findings without a lesion, tracked as
    ``title``, and one per lesion, tracked as ``"<kind> <id>"``, located at its region's centre."""
    from medsight.io.dicom_out.codes import FINDING_CONCEPTS, lesion_kind

    groups: dict[str, dict] = {}
    lesions: dict[str, list] = {}
    for f in r.findings():
        if f.lesion_id is not None:
            lesions.setdefault(f.lesion_id, []).append(f)
    plain = [f for f in r.findings() if f.lesion_id is None]
    for key, fs in ([(title, plain)] if plain else []) + list(lesions.items()):
        meaning = {f.name: FINDING_CONCEPTS.get(f.name, ("", "", f.display_name))[2] for f in fs}
        g = {"numbers": {meaning[f.name]: (f.value, f.unit) for f in fs if f.value is not None},
             "texts": {meaning[f.name]: f.text for f in fs if f.text is not None}}
        if key != title or not plain:
            kind = lesion_kind([f.name for f in fs])
            key = f"{kind.label} {key}"
            g.update(finding=kind.finding_type[2], sites=[kind.finding_site[2]] if kind.finding_site else [],
                     centre=next(f.region.center_mm for f in fs if f.region is not None))
        groups[key] = g
    return groups


def _evidence_uids(ds) -> set[str]:
    return {str(sop.ReferencedSOPInstanceUID) for study in ds.CurrentRequestedProcedureEvidenceSequence
            for series in study.ReferencedSeriesSequence for sop in series.ReferencedSOPSequence}


def _sr(w, r, image, tmp_path):
    ds = w(r, source_datasets(image), algorithm=Algorithm("m", "1.0.0"), title="MedSight m")
    if not r.findings():
        assert ds is None  # nothing found: no SR
        return
    path = write_dicom(ds, tmp_path / "sr.dcm")
    back = pydicom.dcmread(path)
    sr = hd.sr.srread(path)  # highdicom reads it as a structured report
    assert str(sr.SOPInstanceUID) == str(back.SOPInstanceUID)
    assert back.StudyInstanceUID == image.study_uid and back.SeriesInstanceUID != image.series_uid
    assert back.PatientID == source_datasets(image)[0].PatientID
    assert _evidence_uids(back) == set(image.sop_uids)  # it references the images it was made from
    got, expected = _sr_groups(path), _expected_groups(r, "MedSight m")
    assert set(got) == set(expected)  # one group per lesion, one for the rest
    for key, want in expected.items():
        assert got[key]["numbers"] == want["numbers"], key
        assert got[key]["texts"] == want["texts"], key
        if "centre" in want:  # a lesion: what it is, where, and a tracking UID of its own
            assert (got[key]["finding"], got[key]["sites"]) == (want["finding"], want["sites"])
            kind, point, _ = got[key]["centre"]  # on the slice nearest the centre, where a viewer draws it
            srcs = source_datasets(image)
            (on,) = [ds for ds in srcs if str(ds.SOPInstanceUID) == got[key]["on"]]
            near, at = on_nearest_slice(want["centre"], srcs)
            assert kind == "POINT" and near is on and point == pytest.approx(list(at), abs=1e-3)
            placed = scoord_to_patient(on, *point)  # the centre, moved onto that slice's plane
            normal = np.cross([float(v) for v in on.ImageOrientationPatient[:3]],
                              [float(v) for v in on.ImageOrientationPatient[3:]])
            moved = np.asarray(want["centre"]) - placed
            assert np.linalg.norm(moved - (moved @ normal) * normal) < 1e-3
            assert abs(moved @ normal) <= max(image.spacing) / 2 + 1e-3
        else:  # the rest: placed on the image (a series: its middle slice) by the image's outline
            kind, corners, _ = got[key]["centre"]
            middle = sort_like_series(source_datasets(image))[len(image.sop_uids) // 2]
            assert kind == "POLYLINE" and got[key]["on"] == str(middle.SOPInstanceUID)
            rows, cols = int(middle.Rows), int(middle.Columns)
            assert corners == [0, 0, cols, 0, cols, rows, 0, rows, 0, 0]
    assert len({g["uid"] for g in got.values()}) == len(got)
    again = w(r, source_datasets(image), algorithm=Algorithm("m", "1.0.0"), title="MedSight m",
              sop_uid=back.SOPInstanceUID)  # the same SR UID: the same tracking UIDs (a re-sent SR is the same)
    assert {k: g["uid"] for k, g in _sr_groups(write_dicom(again, tmp_path / "again.dcm")).items()} == {
        k: g["uid"] for k, g in got.items()}


def _lps_of_voxel(sources, col: int, row: int, slice_: int) -> np.ndarray:
    """Where DICOM says voxel (col, row) of slice ``slice_`` (in the image's slice order) is, in LPS mm."""
    ds = sources[slice_]
    iop = np.asarray(ds.ImageOrientationPatient, float)
    row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
    return np.asarray(ds.ImagePositionPatient, float) + col * col_spacing * iop[:3] + row * row_spacing * iop[3:]


def _nifti(w, r, image, tmp_path):
    path = w(r, tmp_path / "mask.nii.gz")
    nimg = nib.load(str(path))
    data = np.asarray(nimg.dataobj)
    assert np.array_equal(data.T, r.mask.array[0])  # NIfTI's (x, y, z) = the array's (cols, rows, slices)
    by_uid = {str(ds.SOPInstanceUID): ds for ds in source_datasets(image)}
    sources = [by_uid[u] for u in image.sop_uids]
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    for col, row, slice_ in ((0, 0, 0), (data.shape[0] - 1, 0, 0), (0, data.shape[1] - 1, 1),
                             (data.shape[0] - 1, data.shape[1] - 1, data.shape[2] - 1)):
        ras = nimg.affine @ [col, row, slice_, 1.0]
        assert np.allclose(ras[:3], lps_to_ras @ _lps_of_voxel(sources, col, row, slice_), atol=1e-3)
    assert read(path).same_geometry(image)
    assert [p.name for p in tmp_path.iterdir()] == ["mask.nii.gz"]  # written whole, no temporary left


def _seg(w, r, image, tmp_path):
    ds = w(r)  # the sources: the DICOM files the mask's image was read from
    path = write_dicom(ds, tmp_path / "seg.dcm")
    seg = hd.seg.segread(path)
    assert seg.StudyInstanceUID == image.study_uid and seg.FrameOfReferenceUID == image.frame_of_reference_uid
    assert {str(s.SeriesInstanceUID) for s in seg.ReferencedSeriesSequence} == {image.series_uid}
    refs = {f.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
            for f in seg.PerFrameFunctionalGroupsSequence}
    assert refs and refs <= set(image.sop_uids)
    numbers = list(seg.segment_numbers)
    names = [seg.get_segment_description(n).segment_label for n in numbers]
    assert sorted(names) == sorted(r.labels.values())
    pixels = seg.get_pixels_by_source_instance(list(image.sop_uids), segment_numbers=numbers,
                                               assert_missing_frames_are_empty=True)
    value_of = {name: value for value, name in r.labels.items()}
    for i, name in enumerate(names):  # each segment is the mask's voxels of that structure, slice by slice
        assert np.array_equal(pixels[..., i] > 0, r.mask.array[0] == value_of[name]), name
    empty = rf.segmentation(image)
    empty.mask = image.with_array(np.zeros((1, *image.shape), np.uint8))
    assert w(empty) is None  # no structure found: no SEG


def _sc(w, r, image, tmp_path):
    sources = source_datasets(image)
    own = next((a for a in r.artifacts() if a.kind == "overlay"), None)
    if own is None:
        assert w(r, sources, algorithm=Algorithm("m", "1.0.0")) is None  # no overlay given, none in the result
    else:  # the result's overlay, on the source of the slice it shows (given, or its file re-read)
        for i, ds in enumerate((w(r, sources, algorithm=Algorithm("m", "1.0.0")), w(r))):
            back = pydicom.dcmread(write_dicom(ds, tmp_path / f"own{i}.dcm"))
            assert np.array_equal(back.pixel_array, own.value) and back.StudyInstanceUID == image.study_uid
            assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == image.sop_uids[own.slice_index]
    rgb = np.zeros((image.shape[-2], image.shape[-1], 3), np.uint8)
    rgb[2:5, 3:7] = (255, 0, 0)  # a red patch where the heatmap is hot
    ds = w(r, sources, algorithm=Algorithm("m", "1.0.0"), overlay=rgb, series_description="MedSight m heatmap")
    back = pydicom.dcmread(write_dicom(ds, tmp_path / "sc.dcm"))
    assert back.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
    assert back.StudyInstanceUID == image.study_uid and back.SeriesInstanceUID != image.series_uid
    assert back.SeriesDescription == "MedSight m heatmap (not for diagnosis)"
    assert back.PhotometricInterpretation == "RGB"
    assert list(back.ImageType) == ["DERIVED", "SECONDARY"] and "Not for diagnosis" in back.ImageComments
    assert np.array_equal(back.pixel_array, rgb)
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == sources[0].SOPInstanceUID


def _png(w, r, image, tmp_path):
    from PIL import Image as PILImage

    own = next((a for a in r.artifacts() if a.kind == "overlay"), None)
    path = w(r, tmp_path / "overlay.png")
    if own is None:
        assert path is None and not list(tmp_path.iterdir())
        return
    with PILImage.open(path) as im:
        assert im.format == "PNG" and np.array_equal(np.asarray(im.convert("RGB")), own.value)
    assert [p.name for p in tmp_path.iterdir()] == ["overlay.png"]  # written whole, no temporary left


def _crops(w, r, image, tmp_path):
    from PIL import Image as PILImage

    crops = [a for a in r.artifacts() if a.kind == "crop"]
    paths = w(r, tmp_path, "case")
    assert [p.name for p in paths] == [f"case_{next(iter(a.labels.values())).replace(' ', '')}.png" for a in crops]
    for p, a in zip(paths, crops):
        with PILImage.open(p) as im:
            assert np.array_equal(np.asarray(im.convert("RGB")), a.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


CALLS = {"json": _json, "csv": _csv, "db": _db, "sr": _sr, "nifti": _nifti, "seg": _seg, "sc": _sc, "png": _png,
         "crops": _crops}


def test_every_registered_format_says_how_it_is_read_back():
    formats = {fmt for _, fmt in list_writers()}
    assert formats and formats <= set(CALLS), f"say in CALLS how a {sorted(formats - set(CALLS))} writer is checked"


@pytest.mark.parametrize("registered", list_writers(), ids=lambda k: f"{k[0].__name__}-{k[1]}")
def test_writer_output_reads_back(registered, examples, image, tmp_path):
    result_type, fmt = registered
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


def test_output_folder_writes_a_detection_as_overlay_png_and_sc_and_a_crop_per_nodule(examples, image, tmp_path):
    from PIL import Image as PILImage

    det, empty = examples[rf.DetectionResult]
    folder = OutputFolder(tmp_path / "out")
    first = folder.write(det)
    case = first.name.removesuffix("_overlay.png")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([f"{case}_overlay.png", f"{case}_overlay.dcm", f"{case}_nodule1.png", f"{case}_nodule2.png"])
    assert det.output == str(first)  # the JSON names the overlay written
    sc = pydicom.dcmread(tmp_path / "out" / f"{case}_overlay.dcm")  # the SC of the overlay, on its slice
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == image.sop_uids[det.overlay_slice]
    with PILImage.open(tmp_path / "out" / f"{case}_nodule2.png") as im:
        assert np.array_equal(np.asarray(im.convert("RGB")), det.nodules[1].crop)
    assert folder.write(empty) is None  # no nodule: no picture


def test_a_format_a_type_has_no_writer_for_is_a_clear_error_not_a_guess(examples):
    from medsight.errors import WriteError
    from medsight.tasks.writers import write

    (err,) = examples[rf.PredictionError]
    assert writer_for(err, "nifti") is None and writer_for(err, "no-such-format") is None
    with pytest.raises(WriteError, match="nifti") as info:  # the key facts: the format, the type, what it has
        write(err, "nifti", "x.nii.gz")
    assert "PredictionError" in str(info.value) and "json" in str(info.value)
