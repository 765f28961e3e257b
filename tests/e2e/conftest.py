"""End-to-end fixtures: the model, real test images, the webhook and the stack per module.

The database backend comes from ``MEDSIGHT_E2E_DB`` (``sqlite`` or ``postgresql``);
``scripts/e2e.sh`` runs the suite once with each.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from support.xray_dicom import pneumonia_test_images, write_xray

E2E_ROOT = Path(os.environ.get("MEDSIGHT_E2E_DIR", tempfile.gettempdir())) / "medsight-e2e"
BACKEND = os.environ.get("MEDSIGHT_E2E_DB", "sqlite")


def pytest_collection_modifyitems(items):
    here = Path(__file__).parent
    for item in items:  # this hook sees every collected test: mark only those in this folder
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session", autouse=True)
def _dcmtk_without_nagle():
    """``TCP_NODELAY=1`` for the dcmtk peers (storescu, and Orthanc's DICOM server and client).

    Debian's dcmtk 3.6.7 leaves Nagle's algorithm on unless this variable says otherwise, so on
    loopback every C-STORE to or from a dcmtk peer waits for a delayed ACK: storescu to
    storescp ~90 ms per instance, ~2 ms with it (both sides need it). The peers' latency is not
    what these tests are about; MedSight's own sockets (pynetdicom) are left as they are.
    ``MEDSIGHT_E2E_TCP_NODELAY=0`` runs the peers with Nagle's algorithm on, as before."""
    before = os.environ.get("TCP_NODELAY")
    os.environ["TCP_NODELAY"] = os.environ.get("MEDSIGHT_E2E_TCP_NODELAY", "1")
    yield
    if before is None:
        os.environ.pop("TCP_NODELAY", None)
    else:
        os.environ["TCP_NODELAY"] = before


def _need(exe: str) -> None:
    if shutil.which(exe) is None:
        pytest.skip(f"{exe} is not installed (run `make peers`)")


@pytest.fixture(scope="session")
def pneumonia_npz(shared_data_session):
    return shared_data_session("pneumoniamnist/pneumoniamnist.npz")


@pytest.fixture(scope="session")
def shared_data_session():
    from support.data import shared

    return shared


@pytest.fixture(scope="session")
def e2e_model(pneumonia_npz) -> str:
    """The shipped pneumonia-xray model, or (until it ships) one trained here on PneumoniaMNIST."""
    from medsight.models.saved import list_zoo

    if any(z["name"] == "pneumonia-xray" for z in list_zoo()):
        return "pneumonia-xray"
    folder = E2E_ROOT / "model-fallback"
    if (folder / "model" / "manifest.json").is_file():
        return str(folder / "model")
    import medsight

    clf = medsight.Classifier("classic-cnn", augmentation="none", name="pneumonia-xray-e2e", input_size=(28, 28))
    clf.fit(str(pneumonia_npz), epochs=2, batch_size=128, run_dir=folder)
    return str(folder / "model")


@pytest.fixture(scope="session")
def cases(e2e_model, pneumonia_npz) -> dict[str, np.ndarray]:
    """A clearly positive and a clearly negative PneumoniaMNIST test image for the model."""
    from medsight.engine.predictor import Predictor
    from medsight.io.image import Image
    from medsight.models.saved import load_model
    from medsight.tasks.base import get_task

    images, labels = pneumonia_test_images(pneumonia_npz)
    model = load_model(e2e_model)
    res = Predictor(model, get_task(model.task)).predict_images([Image(array=im[None], spacing=(1, 1))
                                                                 for im in images[:200]])
    scores = np.array([r.score for r in res])
    pos = [i for i in np.argsort(-scores) if labels[i] == 1 and res[i].positive][0]
    neg = [i for i in np.argsort(scores) if labels[i] == 0 and res[i].positive is False][0]  # not referred
    return {"positive": images[pos], "negative": images[neg], "positive_index": int(pos), "negative_index": int(neg)}


@pytest.fixture(scope="session", autouse=True)
def _reap_orthancs():
    from e2e.stack import reap_orthancs

    yield
    reap_orthancs()


@pytest.fixture(scope="session")
def webhook():
    from e2e.stack import Webhook

    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="session")
def postgres_url():
    if BACKEND != "postgresql":
        yield None
        return
    from support.peers import Postgres

    pg = Postgres().start()
    yield pg.url
    pg.stop()


_db_counter = iter(range(1000))


@pytest.fixture(scope="module")
def stack(request, tmp_path_factory, e2e_model, webhook, postgres_url):
    """Orthanc + MedSight (+ a fresh PostgreSQL database) for one test module.

    A module may define ``stack_overrides(stack) -> dict`` of config sections that replace the
    shared ones (outputs by STOW-RS, catch-up over DICOMweb...)."""
    _need("Orthanc")
    _need("storescu")
    from e2e.stack import Stack

    url = None
    if postgres_url:
        import psycopg

        name = f"e2e_{next(_db_counter)}_{os.getpid()}"
        with psycopg.connect(postgres_url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
            c.execute(f"CREATE DATABASE {name}")
        url = postgres_url.rsplit("/", 1)[0] + f"/{name}"
    workdir = tmp_path_factory.mktemp(f"stack-{request.module.__name__.split('.')[-1]}")
    s = Stack(workdir, model=e2e_model, db_url=url, webhook_url=webhook.url,
              overrides=getattr(request.module, "stack_overrides", None)).start()
    yield s
    s.stop()


@pytest.fixture
def xray_file(tmp_path, cases):
    """Write an X-ray (positive or negative) with fresh UIDs; returns the path and its dataset's UIDs."""
    def make(kind: str = "positive", *, patient_id: str = "E2E-0001", name: str = "E2E^PHI^CANARY", **kw):
        path = tmp_path / f"{kind}-{next(_db_counter)}.dcm"
        write_xray(path, cases[kind], patient_id=patient_id, patient_name=name, index=cases[f"{kind}_index"], **kw)
        import pydicom

        return path, pydicom.dcmread(path, stop_before_pixels=True)
    return make


#: a held-out case (configs/hippocampus-split.json "test"); any test case would do: the checks
#: allow 15 % of volume error, and the model's mean absolute error on the test split is ~8 %
HIPPOCAMPUS_CASE = "hippocampus_046"


@pytest.fixture
def mr_series(tmp_path):
    """Write the hippocampus case as an MR series with fresh UIDs; returns its files, UIDs and
    the reference volumes (mL) of its label."""
    from support.mr_dicom import hippocampus_case, reference_volumes_ml, write_mr_series

    def make(*, patient_id: str, study_date: str = "20240105"):
        image, label = hippocampus_case(HIPPOCAMPUS_CASE)
        folder = tmp_path / f"mr-{next(_db_counter)}"
        paths, uids = write_mr_series(image, folder, patient_id=patient_id, study_date=study_date)
        import pydicom

        sops = [str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths]
        return {"paths": paths, **uids, "sop_uids": sops, "reference_ml": reference_volumes_ml(label)}
    return make
