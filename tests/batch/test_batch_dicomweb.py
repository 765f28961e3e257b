"""A DICOMweb query as the batch's input list (``medsight batch --qido``), against a real Orthanc
with its DICOMweb plugin and HTTP authentication: real PneumoniaMNIST test X-rays as CR
instances (one input each) and a real hippocampus MR series (one input for the 3D model). The
results equal those of the same DICOM files read from disk; an input that is gone by the time
it is fetched is an error line and the others are unaffected."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from test_batch import _lines
from typer.testing import CliRunner

from medsight.batch import run_batch
from medsight.batch.dicomweb import fetch_inputs, list_qido
from medsight.cli.main import app
from medsight.errors import ConfigError
from support.mr_dicom import hippocampus_case, write_mr_series
from support.peers import Orthanc
from support.xray_dicom import pneumonia_test_images, write_xray


@pytest.fixture(scope="module")
def pacs(tmp_path_factory):
    with Orthanc(tmp_path_factory.mktemp("orthanc")) as orthanc:
        yield orthanc


@pytest.fixture
def creds(pacs, monkeypatch):
    monkeypatch.setenv("MEDSIGHT_DICOMWEB_USER", pacs.user)
    monkeypatch.setenv("MEDSIGHT_DICOMWEB_PASSWORD", pacs.password)


def test_a_qido_query_lists_fetches_and_predicts_each_instance(pacs, creds, tmp_path, shared_data):
    images, _ = pneumonia_test_images(shared_data("pneumoniamnist/pneumoniamnist.npz"))
    files = [write_xray(tmp_path / "local" / f"{i}.dcm", images[i], patient_id=f"QIDO-{i % 3}", index=i,
                        study_date="20240105") for i in range(24)]
    for f in files:
        assert pacs.upload(f.read_bytes())["Status"] == "Success"
    root = f"{pacs.url}/dicom-web"
    names = list_qido(f"{root}/studies?ModalitiesInStudy=CR&StudyDate=20240101-20240131", per="instance")
    assert len(names) == 24 and names == sorted(names) and all(n.startswith(f"{root}/studies/") for n in names)
    assert list_qido(f"{root}/studies?ModalitiesInStudy=CR&StudyDate=20250101-", per="instance") == []
    assert len(list_qido(f"{root}/instances?PatientID=QIDO-1", per="instance")) == 8

    out = tmp_path / "qido.jsonl"
    r = CliRunner().invoke(app, ["batch", "--model", "pneumonia-xray", "--qido",
                                 f"{root}/studies?ModalitiesInStudy=CR", "--out", str(out), "--save-list",
                                 str(tmp_path / "list.csv"), "--quiet"])
    assert r.exit_code == 0, r.output
    rows = _lines(out)
    assert [x["input"] for x in rows] == names and all(x["ok"] for x in rows)
    local = tmp_path / "local.jsonl"
    run_batch("pneumonia-xray", [str(f) for f in files], local)
    by_sop = {}
    for x in _lines(local):
        by_sop[pydicom.dcmread(x["input"], stop_before_pixels=True).SOPInstanceUID] = x["score"]
    assert {x["input"].rsplit("/", 1)[1]: x["score"] for x in rows} == by_sop  # the same scores as from disk
    # the saved list resumes: a rerun from it has nothing left to do
    r = CliRunner().invoke(app, ["batch", "--model", "pneumonia-xray", "--manifest", str(tmp_path / "list.csv"),
                                 "--out", str(out), "--json", str(tmp_path / "s.json"), "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["already_done"] == 24

    # an instance deleted after the query: its line is an error, the others are as before
    gone = names[5]
    orthanc_id = pacs.post("/tools/lookup", gone.rsplit("/", 1)[1].encode(), "text/plain")[0]["ID"]
    pacs._request("DELETE", f"/instances/{orthanc_id}")
    (tmp_path / "fetch").mkdir()
    paths, errors = fetch_inputs(names[4:7], tmp_path / "fetch")
    assert list(errors) == [1] and "HTTP 404" in errors[1] and paths[0] and paths[2]


def test_a_3d_model_gets_one_input_per_series(pacs, creds, tmp_path):
    image, _ = hippocampus_case("hippocampus_001")
    files, uids = write_mr_series(image, tmp_path / "mr", patient_id="QIDO-MR")
    for f in files:
        pacs.upload(f.read_bytes())
    root = f"{pacs.url}/dicom-web"
    names = list_qido(f"{root}/studies/{uids['study']}/series", per="series")
    assert names == [f"{root}/studies/{uids['study']}/series/{uids['series']}"]
    out = tmp_path / "mr.jsonl"
    summary = run_batch("hippocampus-mri", names, out)
    local = tmp_path / "mr-local.jsonl"
    run_batch("hippocampus-mri", [str(tmp_path / "mr")], local)
    (row,), (ref,) = _lines(out), _lines(local)
    assert summary.failed == 0 and row["ok"] and row["input"] == names[0]
    assert row["volumes_ml"] == ref["volumes_ml"] and np.isfinite(list(row["volumes_ml"].values())).all()


def test_bad_qido_urls_are_refused_with_their_reason(pacs, creds):
    with pytest.raises(ConfigError, match="must not carry credentials"):
        list_qido(f"http://u:p@127.0.0.1:{pacs.http_port}/dicom-web/studies", per="instance")
    with pytest.raises(ConfigError, match="QIDO-RS search URL"):
        list_qido(f"{pacs.url}/dicom-web/studies/1.2.3", per="instance")
    with pytest.raises(ConfigError, match="http"):
        list_qido("file:///etc/passwd", per="instance")


def test_paging_ends_on_a_server_that_ignores_offset():
    """Orthanc ignores ``offset`` when a query filters on ModalitiesInStudy; dicomweb-client's own
    ``get_remaining`` then loops for ever. ``search_all`` stops at the page that brings nothing new."""
    from medsight.batch.dicomweb import search_all

    studies = [{"0020000D": {"Value": [f"1.2.{i}"]}} for i in range(7)]
    calls = []

    def ignores_offset(*, offset, limit, get_remaining, **kw):
        calls.append(offset)
        return studies[:limit]

    def honours_offset(*, offset, limit, get_remaining, **kw):
        calls.append(offset)
        return studies[offset:offset + limit]

    assert len(search_all(ignores_offset, "0020000D", page=3)) == 3 and calls == [0, 3]
    calls.clear()
    assert [s["0020000D"]["Value"][0] for s in search_all(honours_offset, "0020000D", page=3)] == \
        [f"1.2.{i}" for i in range(7)] and calls == [0, 3, 6]
    calls.clear()
    assert len(search_all(ignores_offset, "0020000D", page=500)) == 7 and calls == [0]
