"""MedMNIST ``.npz`` files (2D and 3D, any size) with their official splits.

A local file is used as it is (its MD5 is compared with the official one and a mismatch is
logged, not fatal, since re-saved copies are common). ``medmnist:NAME`` or
``medmnist:NAME_SIZE`` names the official file: a copy already on disk is used, looked up as
``<folder>/<name>/<file>.npz`` in the ``data_dir`` argument, then in ``MEDSIGHT_SHARED_DATA``;
else it is downloaded from Zenodo into the cache folder (``MEDSIGHT_DATA_DIR``, default
``~/.cache/medsight/medmnist``) and refused unless its MD5 matches the one the MedMNIST project
publishes (``medmnist_info.json``, from medmnist 3.0.2's ``INFO``, Apache-2.0). Nothing is
looked up relative to the working directory or the installed package.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import urllib.request
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import DataError

__all__ = ["medmnist_info", "identify", "resolve_medmnist", "load_npz_splits", "md5sum", "download_official"]

log = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
_WARNED: set[str] = set()


@lru_cache(maxsize=1)
def medmnist_info() -> dict[str, Any]:
    """The MedMNIST catalogue: labels, task type, channels, sizes, URLs and MD5s."""
    return json.loads((Path(__file__).with_name("medmnist_info.json")).read_text())


def md5sum(path: Path) -> str:
    """MD5 of a file (cached by path, size and modification time)."""
    st = path.stat()
    return _md5_cached(str(path.resolve()), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=64)
def _md5_cached(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.md5()  # noqa: S324 - MedMNIST publishes MD5s; this is integrity, not security
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def identify(path: Path) -> tuple[str, str] | None:
    """(dataset, size) from a file name like ``pneumoniamnist_64.npz``; None if unknown."""
    m = re.fullmatch(r"([a-z0-9]+?)(?:_(28|64|128|224))?\.npz", path.name.lower())
    if not m or m.group(1) not in medmnist_info():
        return None
    return m.group(1), m.group(2) or "28"


def cache_dir() -> Path:
    return Path(os.environ.get("MEDSIGHT_DATA_DIR", Path.home() / ".cache" / "medsight" / "medmnist"))


def download_official(name: str, size: str = "28", *, dest: Path | None = None, timeout: float = 60) -> Path:
    """Download an official MedMNIST file and verify its MD5.

    Raises:
        DataError: unknown dataset or size, no network, or an MD5 mismatch (the file is deleted).
    """
    info = medmnist_info().get(name)
    if info is None:
        raise DataError(f"unknown MedMNIST dataset {name!r}; known: {', '.join(sorted(medmnist_info()))}")
    entry = info["files"].get(size)
    if entry is None:
        raise DataError(f"MedMNIST {name} has no size {size}; available: {', '.join(info['files'])}")
    dest = dest or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / (f"{name}.npz" if size == "28" else f"{name}_{size}.npz")
    if target.exists() and md5sum(target) == entry["md5"]:
        return target
    log.info("downloading %s", entry["url"])
    fd, tmp = tempfile.mkstemp(dir=dest, suffix=".part")
    os.close(fd)
    try:
        with urllib.request.urlopen(entry["url"], timeout=timeout) as r, open(tmp, "wb") as f:  # noqa: S310
            shutil.copyfileobj(r, f)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"could not download MedMNIST {name} ({exc}); give a local .npz path as data.source, or set "
                        f"MEDSIGHT_SHARED_DATA to a folder holding {name}/{target.name}") from None
    got = md5sum(Path(tmp))
    if got != entry["md5"]:
        Path(tmp).unlink(missing_ok=True)
        raise DataError(f"downloaded {name} has MD5 {got}, expected the official {entry['md5']}; refused")
    os.replace(tmp, target)
    return target


def resolve_medmnist(source: str, *, data_dir: str | Path | None = None) -> Path:
    """A local path for ``source``: a path as it is, or ``medmnist:NAME[_SIZE]``.

    Args:
        source: a path, or ``medmnist:NAME[_SIZE]`` (``pneumoniamnist``, ``organmnist3d_64``).
        data_dir: a folder holding ``<name>/<name>[_SIZE].npz`` to look in first (default:
            ``MEDSIGHT_SHARED_DATA`` when set).

    Raises:
        DataError: ``MEDSIGHT_SHARED_DATA`` is not a folder, or the file is not on disk and
            cannot be downloaded.
    """
    if not source.startswith("medmnist:"):
        return Path(source)
    spec = source.split(":", 1)[1].lower()
    name, _, size = spec.partition("_")
    file = f"{name}.npz" if not size or size == "28" else f"{name}_{size}.npz"
    roots = []
    if data_dir is not None:
        roots.append(Path(data_dir))
    env = os.environ.get("MEDSIGHT_SHARED_DATA", "").strip()
    if env:
        if not Path(env).is_dir():
            raise DataError(f"MEDSIGHT_SHARED_DATA is {env!r}, which is not a folder; expected the folder that holds "
                            f"{name}/{file} (or unset it to download the official file)")
        roots.append(Path(env))
    for base in roots:
        if (base / name / file).is_file():
            return base / name / file
    return download_official(name, size or "28")


def load_npz_splits(path: Path) -> dict[str, Any]:
    """Load a MedMNIST-style npz.

    Returns:
        ``{"images": {split: uint8 array (N, H, W[, C]) or (N, D, H, W)}, "labels": {split: (N,) or
        (N, L)}, "info": catalogue entry or None, "md5": str, "official": bool|None}``

    Raises:
        DataError: missing keys, mismatched lengths, or pickled content.
    """
    if not path.is_file():
        raise DataError(f"dataset file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: not a readable .npz ({exc})") from None
    with z:
        keys = set(z.keys())
        splits = [s for s in SPLITS if f"{s}_images" in keys]
        if not splits:
            raise DataError(f"{path}: expected keys like train_images/train_labels; found {sorted(keys)}")
        images, labels = {}, {}
        for s in splits:
            if f"{s}_labels" not in keys:
                raise DataError(f"{path}: has {s}_images but no {s}_labels")
            x, y = z[f"{s}_images"], z[f"{s}_labels"]
            if len(x) != len(y):
                raise DataError(f"{path}: {s} has {len(x)} images but {len(y)} labels")
            y = np.asarray(y)
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            images[s], labels[s] = x, y
    ident = identify(path)
    info = medmnist_info()[ident[0]] if ident else None
    digest = md5sum(path)
    official = None
    if ident:
        official = digest == info["files"][ident[1]]["md5"]
        if not official and digest not in _WARNED:
            _WARNED.add(digest)
            log.warning("%s: MD5 %s differs from the official MedMNIST file; using it as it is", path.name, digest)
    return {"images": images, "labels": labels, "info": info, "md5": digest, "official": official,
            "name": ident[0] if ident else path.stem}
