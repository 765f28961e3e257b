"""SEG, SR and SC results for a real LIDC slab: read back by pydicom and by MedSight, and filed
by a real Orthanc beside their source."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from io_factory import make_slice, series_dir
from pydicom.data import get_testdata_file

import medsight.io as mio
from medsight.errors import ShapeError, WriteError
from medsight.io.dicom_out import Algorithm, Finding, build_sc, build_seg, build_sr, source_datasets, write_dicom

ALGO = Algorithm("nodule-test", "1.2.3")


@pytest.fixture(scope="module")
def lidc():
    from support.data import shared

    folder = series_dir(shared, "lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    image = mio.read(folder)
    return folder, image, source_datasets(image)


@pytest.fixture(scope="module")
def results(lidc, tmp_path_factory):
    _, image, sources = lidc
    mask = np.zeros(image.shape, np.uint8)
    mask[6:11, 355:380, 305:330] = 1  # around the nodule of the provenance notes
    mask[3, 100:120, 100:110] = 2
    out = tmp_path_factory.mktemp("results")
    seg_ds = build_seg(list(reversed(sources)), mask, {1: "Nodule", 2: "Lung"}, algorithm=ALGO)
    seg = write_dicom(seg_ds, out / "seg.dcm")
    findings = [Finding("Nodule diameter", 23.4, "mm"), Finding("Malignancy", text="suspicious"),
                Finding("Nodule volume", 5.1, "ml")]
    sr = write_dicom(build_sr(sources, findings, algorithm=ALGO), out / "sr.dcm")
    rgb = np.zeros((512, 512, 3), np.uint8)
    rgb[..., 0] = 200
    sc = write_dicom(build_sc(sources[8], rgb, algorithm=ALGO), out / "sc.dcm")
    return {"seg": seg, "sr": sr, "sc": sc, "mask": mask}


def test_results_are_in_the_source_study_in_new_series_with_fresh_uids(lidc, results):
    _, image, sources = lidc
    src_sops = {s.SOPInstanceUID for s in sources}
    seen_series = set()
    for kind in ("seg", "sr", "sc"):
        ds = pydicom.dcmread(results[kind])
        assert ds.StudyInstanceUID == image.study_uid
        assert ds.PatientID == sources[0].PatientID and ds.PatientName == sources[0].PatientName
        assert ds.SeriesInstanceUID != image.series_uid and ds.SeriesInstanceUID not in seen_series
        assert ds.SOPInstanceUID not in src_sops
        assert ds.Manufacturer == "MedSight" and ds.SoftwareVersions == "1.2.3"
        seen_series.add(ds.SeriesInstanceUID)
    sc = pydicom.dcmread(results["sc"])
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == sources[8].SOPInstanceUID
    assert sc.pixel_array.shape == (512, 512, 3) and int(sc.pixel_array[..., 0].min()) == 200
    sr = pydicom.dcmread(results["sr"])
    evidence = {i.ReferencedSOPInstanceUID for s in sr.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == src_sops


def test_sr_holds_the_findings_with_ucum_units(results):
    import highdicom as hd

    sr = hd.sr.srread(results["sr"])
    (group,) = sr.content.get_planar_roi_measurement_groups()
    assert [s.value.meaning for s in group.finding_sites] == ["Chest"]  # the slab's BodyPartExamined, coded
    values = {m.name.meaning: (m.value, m.unit.value) for m in group.get_measurements()}
    assert values == {"Nodule diameter": (pytest.approx(23.4), "mm"), "Nodule volume": (pytest.approx(5.1), "mL")}
    (evaluation,) = group.get_qualitative_evaluations()
    assert evaluation.value.meaning == "suspicious"


def test_what_a_viewer_lists_names_each_result_and_says_what_it_is(lidc, results):
    """SeriesDescription is what a viewer's series list shows; the segments carry the colours
    of MedSight's own mask pictures; the overlay says it is derived and not for diagnosis."""
    from highdicom.color import CIELabColor

    from medsight.palette import label_rgb

    seg = pydicom.dcmread(results["seg"])
    assert seg.SeriesDescription == "MedSight nodule-test segmentation"
    for item in seg.SegmentSequence:
        lab = CIELabColor.from_dicom_value(item.RecommendedDisplayCIELabValue)
        assert np.allclose(lab.to_rgb(), label_rgb(item.SegmentNumber), atol=2), item.SegmentLabel
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["Nodule", "Lung"]
    sc = pydicom.dcmread(results["sc"])
    assert sc.SeriesDescription == "MedSight overlay (not for diagnosis)"
    assert list(sc.ImageType) == ["DERIVED", "SECONDARY"] and "Not for diagnosis" in sc.ImageComments
    long = build_sc(lidc[2][8], np.zeros((8, 8, 3), np.uint8), algorithm=ALGO, series_description="x" * 80)
    assert len(long.SeriesDescription) == 64 and long.SeriesDescription.endswith("(not for diagnosis)")


def test_seg_frames_land_on_the_right_source_slices(lidc, results):
    import highdicom as hd

    _, image, sources = lidc
    seg = hd.seg.segread(results["seg"])
    labels = seg.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources], combine_segments=True,
                                               skip_overlap_checks=True)
    np.testing.assert_array_equal(labels, results["mask"])
    # read back through medsight.io: a label image on the SEG's own frames, in patient space
    back = mio.read(results["seg"])
    assert back.modality == "SEG" and back.meta["segments"] == {"1": "Nodule", "2": "Lung"}
    first = int(np.argmax(results["mask"].any(axis=(1, 2))))
    assert back.origin == pytest.approx(image.affine[:3, :3] @ [first, 0, 0] + image.affine[:3, 3])
    assert int((back.array == 1).sum()) == int((results["mask"] == 1).sum())


def test_bad_result_inputs_get_clear_errors(lidc):
    _, image, sources = lidc
    with pytest.raises(ShapeError, match=r"\(16, 512, 512\)"):
        build_seg(sources, np.zeros((15, 512, 512), np.uint8), {1: "x"}, algorithm=ALGO)
    with pytest.raises(WriteError, match=r"label value\(s\) \[3\]"):
        build_seg(sources, np.full(image.shape, 3, np.uint8), {1: "x"}, algorithm=ALGO)
    with pytest.raises(WriteError, match="one study"):
        build_sr([sources[0], make_slice(np.zeros((2, 2), np.int16))], [Finding("x", 1.0)], algorithm=ALGO)
    with pytest.raises(WriteError, match="value or a text"):
        build_sr(sources, [Finding("x")], algorithm=ALGO)
    with pytest.raises(ShapeError, match="uint8"):
        build_sc(sources[0], np.zeros((512, 512, 3), np.float32), algorithm=ALGO)
    rtdose = pydicom.dcmread(get_testdata_file("rtdose.dcm"))  # an object SR cannot measure on
    with pytest.raises(WriteError, match="measurement groups.*RTDOSE"):
        build_sr([rtdose], [Finding("x", 1.0)], algorithm=ALGO)
    with pytest.raises(WriteError, match="source DICOM files"):
        source_datasets(image.with_array(image.array, meta={}))


def test_a_real_orthanc_files_results_beside_their_source(lidc, results, tmp_path):
    from support.peers import Orthanc

    folder, image, _ = lidc
    with Orthanc(tmp_path / "orthanc") as pacs:
        for f in sorted(folder.glob("*.dcm")):
            pacs.upload(f.read_bytes())
        answers = {kind: pacs.upload(results[kind].read_bytes()) for kind in ("seg", "sr", "sc")}
        assert all(a["Status"] == "Success" for a in answers.values()), answers
        studies = pacs.get("/studies")
        assert len(studies) == 1  # everything filed in the one source study
        study = pacs.get(f"/studies/{studies[0]}")
        assert study["MainDicomTags"]["StudyInstanceUID"] == image.study_uid
        modalities = sorted(pacs.get(f"/series/{s}")["MainDicomTags"]["Modality"] for s in study["Series"])
        assert modalities == ["CT", "OT", "SEG", "SR"]


def test_results_for_a_minimal_projection_xray_without_type2_attributes(tmp_path):
    ds = make_slice(np.zeros((28, 28), np.uint8), slope=None, intercept=None, modality="CR")
    for kw in ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate", "StudyTime",
               "ReferringPhysicianName", "ImageOrientationPatient", "ImagePositionPatient", "FrameOfReferenceUID"):
        delattr(ds, kw)
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    path = tmp_path / "xr.dcm"
    ds.save_as(path, enforce_file_format=True)
    sources = source_datasets(mio.read(path))
    sr = build_sr(sources, [Finding("Pneumonia probability", 0.83), Finding("Decision", text="pneumonia")],
                  algorithm=ALGO)
    assert "PatientBirthDate" not in sources[0]  # the caller's dataset is left as it was
    assert sr.PatientBirthDate == "" and sr.StudyInstanceUID == ds.StudyInstanceUID
    write_dicom(build_sc(sources[0], np.zeros((28, 28, 3), np.uint8), algorithm=ALGO), tmp_path / "sc.dcm")
    mask = np.zeros((28, 28), np.uint8)
    mask[3:9, 4:10] = 1
    seg_path = write_dicom(build_seg(sources, mask, {1: "Opacity"}, algorithm=ALGO), tmp_path / "seg.dcm")
    back = mio.read(seg_path)
    assert back.shape == (28, 28) and back.meta["referenced_sop_uids"] == [ds.SOPInstanceUID]
    np.testing.assert_array_equal(back.array[0], mask)


def test_results_are_built_on_a_source_with_malformed_patient_and_study_values(tmp_path):
    """A modality's sloppy header (a birth date with dashes, a free-text sex, a time with a
    colon) must not stop the result being reported; the copies hold those values empty."""
    ds = make_slice(np.zeros((28, 28), np.uint8), slope=None, intercept=None, modality="CR")
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR
    ds.PatientBirthDate, ds.PatientSex, ds.StudyTime = "19XX-07-PHI", "female", "10:15"
    sr = build_sr([ds], [Finding("Pneumonia probability", 0.83)], algorithm=ALGO)
    sc = build_sc(ds, np.zeros((28, 28, 3), np.uint8), algorithm=ALGO)
    for out in (sr, sc):
        assert not any(out.get(kw) for kw in ("PatientBirthDate", "PatientSex", "StudyTime"))
        assert out.PatientID == ds.PatientID and out.StudyInstanceUID == ds.StudyInstanceUID
    assert ds.PatientBirthDate == "19XX-07-PHI"  # the caller's dataset is left as it was
