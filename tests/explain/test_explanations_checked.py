"""Explanations are checked, not assumed (synthetic data): a classifier whose label is set by a
bright blob at a random place must have its Grad-CAM peak on the blob, in 2D and in 3D; and the
heatmaps of the same network with randomised weights must differ from the trained one's
(Adebayo et al. 2018, model-randomisation check). Also: ``medsight explain`` writes the overlays.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from medsight.config import config_from_dict
from medsight.io.image import Image
from medsight.tasks.base import get_task

#: The side in pixels of one cell of the Grad-CAM grid: resnet-small's last stage is the input at 1/8
#: (4 x 4 on a 32 x 32 image, 3 x 3 x 3 on 24^3), so a hit is a peak in a cell that holds part of the
#: blob (the pointing game at the map's own resolution).
CELL = 8


def _blobs(n: int, shape: tuple[int, ...], rng: np.random.Generator, radius: float):
    """Noise images; the positives (every other one) hold a bright ball at a random place."""
    x = rng.normal(60, 20, (n, *shape)).clip(0, 255)
    centres = []
    grid = np.indices(shape).astype(float)
    for i in range(n):
        c = [rng.uniform(radius + 1, s - radius - 2) for s in shape]
        centres.append(c)
        if i % 2:
            d = np.sqrt(sum((g - ci) ** 2 for g, ci in zip(grid, c)))
            x[i][d <= radius] += 150
    return x.clip(0, 255).astype(np.uint8), (np.arange(n) % 2).reshape(-1, 1).astype(np.uint8), np.array(centres)


def _train(tmp_path, shape, n_train, radius, epochs, seed=0):
    rng = np.random.default_rng(seed)
    data = {}
    splits = {}
    for split, n in (("train", n_train), ("val", 40), ("test", 40)):
        x, y, c = _blobs(n, shape, rng, radius)
        data[f"{split}_images"], data[f"{split}_labels"], splits[split] = x, y, (x, y, c)
    np.savez(tmp_path / "blobs.npz", **data)
    cfg = config_from_dict({"task": "classification", "name": f"blob{len(shape)}d",
                            "data": {"source": str(tmp_path / "blobs.npz")},
                            "preprocessing": {"spatial_size": list(shape)},
                            "model": {"name": "resnet-small", "params": {"width": 8}},
                            "train": {"epochs": epochs, "batch_size": 16, "lr": 0.005, "threads": 2},
                            "evaluation": {"bootstrap": 100}})
    model = get_task("classification").train(cfg, run_dir=tmp_path / "run")
    return model, splits["test"]


def _hits(model, test, radius, method="gradcam"):
    x, y, c = test
    task = get_task("classification")
    pos = [i for i in range(len(x)) if y[i, 0] == 1]
    images = [Image(x[i][None].astype(np.float32), spacing=(1.0,) * (x.ndim - 1)) for i in pos]
    results = task.infer(model, images)
    hits = []
    maps = []
    for im, r, i in zip(images, results, pos):
        task.explain(model, im, r, method=method)
        peak = np.array(r.heatmap["peak_index"], float)
        lo = np.floor(peak / CELL) * CELL  # the Grad-CAM cell the peak is in: does it hold part of the blob?
        gap = np.maximum(0, np.maximum(lo - c[i], c[i] - (lo + CELL - 1)))
        hits.append(np.linalg.norm(gap) <= radius)
        maps.append(r)
    return float(np.mean(hits)), images, maps


@pytest.mark.parametrize("shape,n_train,radius,epochs", [((32, 32), 200, 3.0, 6), ((24, 24, 24), 160, 3.0, 6)],
                         ids=["2d", "3d"])
def test_gradcam_peaks_on_the_blob_that_sets_the_label(tmp_path, shape, n_train, radius, epochs):
    model, test = _train(tmp_path, shape, n_train, radius, epochs)
    ev = get_task("classification").evaluate(model, str(tmp_path / "blobs.npz"), n_boot=100)
    assert ev["auc"] > 0.95, ev["auc"]
    methods = ("gradcam", "gradcampp")
    for method in methods:
        rate, images, results = _hits(model, test, radius, method)
        print(f"{len(shape)}D: {method} peak on the blob in {rate:.0%} of {len(results)} positives")
        assert rate >= 0.9, (method, rate)

    # model randomisation: the same images under the network with re-initialised weights
    from medsight.explain import heatmap

    trained = {m: [heatmap(model, im, method=m).values for im in images[:10]] for m in methods}
    for module in model.network.modules():
        if hasattr(module, "reset_parameters"):
            torch.manual_seed(1)
            module.reset_parameters()
    for method in methods:
        rho = [spearmanr(a.ravel(), heatmap(model, im, method=method).values.ravel()).statistic
               for a, im in zip(trained[method], images[:10])]
        rho = float(np.nanmean(np.abs(rho)))
        print(f"{len(shape)}D: {method} mean |Spearman rho| trained vs randomised weights {rho:.2f}")
        assert rho < 0.5, (method, rho)


def test_explain_cli_writes_an_overlay_per_input_and_says_how_it_was_made(tiny_npz, tmp_path):
    from typer.testing import CliRunner

    from medsight.cli.main import app
    from support.bad_inputs import write_png

    cfg = config_from_dict({"task": "classification", "name": "tiny", "data": {"source": str(tiny_npz)},
                            "preprocessing": {"spatial_size": [28, 28]},
                            "model": {"name": "resnet-small", "params": {"width": 8}},
                            "train": {"epochs": 2, "batch_size": 16, "lr": 0.01, "threads": 1},
                            "evaluation": {"bootstrap": 100}})
    get_task("classification").train(cfg, run_dir=tmp_path / "run")
    with np.load(tiny_npz) as z:
        pngs = [write_png(tmp_path / f"in{i}.png", z["test_images"][i]) for i in (0, 1)]
    (tmp_path / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["explain", "--model", str(tmp_path / "run/model"), *map(str, pngs),
                                      str(tmp_path / "broken.png"), "--out", str(out), "--json",
                                      str(tmp_path / "r.json")])
    assert result.exit_code == 1  # the broken input is listed; the others are explained
    assert sorted(p.name for p in out.iterdir()) == ["in0_overlay.png", "in1_overlay.png"]
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r.get("heatmap", {}).get("method") for r in rows[:2]] == ["gradcam", "gradcam"]
    assert "error" in rows[2]
    plain = CliRunner().invoke(app, ["predict", "--model", str(tmp_path / "run/model"), str(pngs[0]), "--json",
                                     str(tmp_path / "p.json")])
    assert plain.exit_code == 0 and "heatmap" not in json.loads((tmp_path / "p.json").read_text())[0]
    bad = CliRunner().invoke(app, ["explain", "--model", "hippocampus-mri", "--method", "gradcam", str(pngs[0]),
                                   "--out", str(out)])
    assert bad.exit_code == 2 and "is explained by probability" in bad.output
