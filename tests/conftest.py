"""Shared fixtures: tiny synthetic images, and the real data in ../shared/data (skipped with a
reason when the folder is absent, as on a user's machine).

The example plug-in task (``tests/blobsize``, docs/extending.md) is registered for the whole
session through ``$MEDSIGHT_PLUGINS``, as a user would register one, so the contract tests over
every task and result type cover it too (and the service's worker processes inherit it).
"""

from __future__ import annotations

import os

os.environ["MEDSIGHT_PLUGINS"] = ",".join(filter(None, [os.environ.get("MEDSIGHT_PLUGINS"), "blobsize"]))
# ... and found by the commands the tests start (the CLI, the demo, the service's processes)
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [os.path.dirname(__file__), os.environ.get("PYTHONPATH")]))

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from medsight import plugins  # noqa: E402
from medsight.config import config_from_dict  # noqa: E402
from medsight.tasks.base import get_task  # noqa: E402
from support.data import REPO, SHARED_DATA, shared  # noqa: E402, F401  (re-exported for tests)

plugins.load()  # registered before collection: the registries the contract tests read hold it


@pytest.fixture
def shared_data():
    return shared


@pytest.fixture(autouse=True)
def _quiet_torch_threads():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(0)


from support.bad_inputs import write_png  # noqa: E402  (re-exported for tests)


@pytest.fixture
def tiny_class_folder(tmp_path, rng):
    """root/<class>/*.png with two visually separable classes (bright centre vs dark centre), 28x28."""
    root = tmp_path / "folder"
    for label, bright in (("normal", False), ("pneumonia", True)):
        d = root / label
        d.mkdir(parents=True)
        for i in range(30):
            a = rng.integers(0, 80, (28, 28)).astype(np.uint8)
            if bright:
                a[8:20, 8:20] += 150
            write_png(d / f"{label}_{i:02d}.png", a)
    return root


@pytest.fixture
def tiny_npz(tmp_path, rng):
    """A MedMNIST-style npz with separable classes: 60/20/20 images of 28x28."""
    def make(n):
        y = np.arange(n) % 2
        x = rng.integers(0, 80, (n, 28, 28)).astype(np.uint8)
        x[y == 1, 8:20, 8:20] += 150
        return x, y.reshape(-1, 1).astype(np.uint8)
    data = {}
    for split, n in (("train", 60), ("val", 20), ("test", 20)):
        x, y = make(n)
        data[f"{split}_images"], data[f"{split}_labels"] = x, y
    path = tmp_path / "tiny.npz"
    np.savez(path, **data)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small trained binary model (normal vs pneumonia on synthetic 28x28 images), saved."""
    root = tmp_path_factory.mktemp("tinymodel")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 80, (100, 28, 28)).astype(np.uint8)
    y = (np.arange(100) % 2).astype(np.uint8)
    x[y == 1, 8:20, 8:20] += 150
    np.savez(root / "tiny.npz", train_images=x[:60], train_labels=y[:60], val_images=x[60:80], val_labels=y[60:80],
             test_images=x[80:], test_labels=y[80:])
    cfg = config_from_dict({
        "task": "classification", "name": "tiny-xray", "modalities": ["CR", "DX"],
        "data": {"source": str(root / "tiny.npz"), "labels": ["normal", "pneumonia"]},
        "model": {"name": "resnet-small", "params": {"width": 8}},
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.01, "threads": 1}, "evaluation": {"bootstrap": 200}})
    get_task("classification").train(cfg, run_dir=root / "run")
    return root / "run" / "model"


# -- a throw-away PostgreSQL (the service's and the batch's tests) ---------------------------------
@pytest.fixture(scope="session")
def _postgres():
    from support.peers import Postgres

    pg = Postgres().start()
    yield pg
    pg.stop()


_n = iter(range(10_000))


@pytest.fixture
def postgres_url(_postgres) -> str:
    """URL of a fresh database in a session-wide throw-away PostgreSQL cluster."""
    import psycopg

    name = f"t{next(_n)}"
    with psycopg.connect(_postgres.url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return _postgres.url.rsplit("/", 1)[0] + f"/{name}"
