"""De-identification of the real PGBM/LIDC headers and of a SEG that references them."""

from __future__ import annotations

import io
import re

import numpy as np
import pydicom
import pytest
from io_factory import make_slice, pgbm_series, series_dir

import medsight.io as mio
from medsight.errors import DeidentificationError
from medsight.io.deid import Deidentifier, deidentify_files
from medsight.io.dicom_out import Algorithm, build_seg, source_datasets

IDENTIFYING = ("PatientID", "PatientName", "PatientBirthDate", "AccessionNumber", "StudyDate", "SeriesDate",
               "AcquisitionDate", "ContentDate", "InstitutionName", "ReferringPhysicianName", "StationName",
               "DeviceSerialNumber", "PatientAge", "OperatorsName")


def as_bytes(ds) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def originals(datasets) -> set[str]:
    """Identifying values and instance UIDs of the originals that must not survive."""
    values = set()
    for ds in datasets:
        for kw in IDENTIFYING + ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID"):
            v = str(ds.get(kw, "") or "")
            if len(v) >= 4:
                values.add(v)
    return values


@pytest.mark.parametrize("shift", [None, -400])
def test_real_study_headers_lose_every_identifier_and_keep_consistent_uids(shared_data, shift):
    files = sorted(pgbm_series(shared_data, "1991-11-19", "T1post").glob("*.dcm"))[:4]
    files += sorted(pgbm_series(shared_data, "1991-11-19", "MaskTumor").glob("*.dcm"))[:4]
    datasets = [pydicom.dcmread(f) for f in files]
    deid = Deidentifier(salt=b"test-salt", date_shift_days=shift)
    clean = [deid(ds) for ds in datasets]
    secrets = originals(datasets)
    for ds in clean:
        raw = as_bytes(ds)
        leaked = [s for s in secrets if s.encode() in raw]
        assert not leaked, leaked
        assert ds.PatientIdentityRemoved == "YES" and ds.PatientID.startswith("ANON-")
        assert not ds.get("PatientBirthDate") and "PatientAge" not in ds
        assert all(not e.tag.is_private for e in ds.iterall())
        assert np.array_equal(ds.pixel_array, datasets[0].pixel_array) or ds is not clean[0]
    # one study, two series, each consistently remapped
    assert len({ds.StudyInstanceUID for ds in clean}) == 1
    assert len({ds.SeriesInstanceUID for ds in clean}) == 2
    assert len({ds.FrameOfReferenceUID for ds in clean}) == len({ds.FrameOfReferenceUID for ds in datasets})
    for before, after in zip(datasets, clean):
        assert after.file_meta.MediaStorageSOPInstanceUID == after.SOPInstanceUID
        assert re.fullmatch(r"2\.25\.\d{1,39}", after.SOPInstanceUID)
        np.testing.assert_array_equal(after.pixel_array, before.pixel_array)
        if shift is None:
            assert after.StudyDate == "" and after.get("StudyTime", "") == ""
        else:
            assert after.StudyDate == "19901015"  # 1991-11-19 minus 400 days
            assert after.StudyTime == before.StudyTime
            assert after.LongitudinalTemporalInformationModified == "MODIFIED"
    # the same salt gives the same UIDs in another run (an export in several parts stays one study)
    assert Deidentifier(salt=b"test-salt")(datasets[0]).StudyInstanceUID == clean[0].StudyInstanceUID
    assert Deidentifier(salt=b"other")(datasets[0]).StudyInstanceUID != clean[0].StudyInstanceUID


def test_references_inside_sequences_follow_the_remapped_instances(shared_data):
    folder = series_dir(shared_data, "lidc_idri_nodule_slabs/LIDC-IDRI-0001")
    image = mio.read(folder)
    sources = source_datasets(image)
    mask = np.zeros(image.shape, np.uint8)
    mask[5:9, 350:380, 300:330] = 1
    seg = build_seg(sources, mask, {1: "Nodule"}, algorithm=Algorithm("t", "1"))
    deid = Deidentifier(salt=b"s")
    clean_sources = [deid(pydicom.dcmread(f)) for f in image.meta["source_files"]]
    clean_seg = deid(seg)
    new_sops = {ds.SOPInstanceUID for ds in clean_sources}
    refs = {item.ReferencedSOPInstanceUID for s in clean_seg.ReferencedSeriesSequence
            for item in s.ReferencedInstanceSequence}
    derived = {src.ReferencedSOPInstanceUID for frame in clean_seg.PerFrameFunctionalGroupsSequence
               for d in frame.DerivationImageSequence for src in d.SourceImageSequence}
    assert refs == new_sops and derived <= new_sops and derived
    assert clean_seg.ReferencedSeriesSequence[0].SeriesInstanceUID == clean_sources[0].SeriesInstanceUID
    assert clean_seg.StudyInstanceUID == clean_sources[0].StudyInstanceUID
    assert clean_seg.SOPClassUID == seg.SOPClassUID  # DICOM-defined UIDs are kept
    assert not (originals(sources) & {str(v) for v in (e.value for e in clean_seg.iterall()) if isinstance(v, str)})


def test_burned_in_annotation_is_refused_and_export_goes_on(tmp_path):
    good = make_slice(np.zeros((4, 4), np.int16))
    burned = make_slice(np.zeros((4, 4), np.int16))
    burned.BurnedInAnnotation = "YES"
    with pytest.raises(DeidentificationError, match="BurnedInAnnotation"):
        Deidentifier()(burned)
    good.save_as(tmp_path / "good.dcm", enforce_file_format=True)
    burned.save_as(tmp_path / "burned.dcm", enforce_file_format=True)
    errors: list[dict[str, str]] = []
    written = deidentify_files([tmp_path / "burned.dcm", tmp_path / "good.dcm"], tmp_path / "out", Deidentifier(),
                               errors=errors)
    assert len(written) == 1 and pydicom.dcmread(written[0]).PatientIdentityRemoved == "YES"
    assert [(e["file"], e["error"]) for e in errors] == [(str(tmp_path / "burned.dcm"), "DeidentificationError")]
