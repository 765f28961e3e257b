"""Results back to the PACS: an SR with the findings, a Secondary Capture with the heatmap
overlay, a SEG for masks, built by :mod:`medsight.io.dicom_out` and sent by C-STORE
(pynetdicom) or STOW-RS (dicomweb-client).

The UIDs of every object are derived from the result's key, so a result sent twice (its
worker was killed after sending, before acknowledging) is the same instance twice, and the
PACS keeps one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import ServiceError
from medsight.service.config import DicomDestination, OutputsConfig, StowDestination

__all__ = ["OutputObject", "build_outputs", "send_dicom", "send_stow", "derived_uid"]

log = logging.getLogger(__name__)


def derived_uid(*parts: str) -> str:
    """A UID that depends only on ``parts`` (``2.25.<int>`` from a SHA-512 of them)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(prefix=None, entropy_srcs=[str(p) for p in parts]))


@dataclass
class OutputObject:
    kind: str  # SR | SC | SEG
    dataset: Any

    @property
    def sop_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.dataset.SeriesInstanceUID)


def _findings(result: Any) -> list[Any]:
    from medsight.io.dicom_out import Finding

    out = []
    probs = (result.outputs or {}).get("probabilities") or {}
    for label, p in probs.items():
        out.append(Finding(name=f"Probability of {label}"[:64], value=float(p), unit="1"))
    if result.threshold is not None:
        out.append(Finding(name="Operating threshold", value=float(result.threshold), unit="1"))
    if result.label:
        out.append(Finding(name="Decision", text=str(result.label)))
    for name, v in ((result.outputs or {}).get("volumes_ml") or {}).items():
        out.append(Finding(name=f"Volume of {name}"[:64], value=float(v), unit="mL"))
    for name, v in ((result.outputs or {}).get("findings") or {}).items():
        if isinstance(v, (int, float)):
            out.append(Finding(name=name.replace("_", " ")[:64], value=float(v),
                               unit="mm" if name.endswith("_mm") else "1"))
    return out


def build_outputs(result: Any, sources: list[Any], cfg: OutputsConfig) -> list[OutputObject]:
    """The DICOM objects for one stored result.

    Args:
        result: a :class:`~medsight.service.db.Result` row with status ``ok``.
        sources: the source datasets (headers are enough).
        cfg: the ``outputs`` section.
    """
    from medsight.io.dicom_out import Algorithm, build_sc, build_sr

    algo = Algorithm(result.model, result.model_version, cfg.manufacturer)
    out: list[OutputObject] = []
    key = result.key
    if cfg.send_sr:
        findings = _findings(result)
        if findings:
            sr = build_sr(sources, findings, algorithm=algo, title=f"MedSight {result.model}"[:64],
                          series_uid=derived_uid(result.series_uid, result.model, "SR"),
                          sop_uid=derived_uid(key, "SR"))
            out.append(OutputObject("SR", sr))
    if cfg.send_sc and result.overlay_path and Path(result.overlay_path).is_file() and len(sources) == 1:
        from PIL import Image as PILImage

        with PILImage.open(result.overlay_path) as im:
            rgb = np.asarray(im.convert("RGB"))
        sc = build_sc(sources[0], rgb, algorithm=algo, series_description=f"MedSight {result.model} heatmap"[:64],
                      series_uid=derived_uid(result.series_uid, result.model, "SC"), sop_uid=derived_uid(key, "SC"))
        out.append(OutputObject("SC", sc))
    return out


def send_dicom(dest: DicomDestination, objects: list[OutputObject], *, calling_aet: str) -> dict[str, int]:
    """C-STORE ``objects`` to ``dest`` over one association.

    Returns:
        SOPInstanceUID → DICOM status of each object.

    Raises:
        ServiceError: the association could not be established.
    """
    from pynetdicom import AE

    ae = AE(ae_title=dest.calling_ae_title or calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
    for sop_class, ts in {(str(o.dataset.SOPClassUID), str(o.dataset.file_meta.TransferSyntaxUID)) for o in objects}:
        ae.add_requested_context(sop_class, ts)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title)
    if not assoc.is_established:
        raise ServiceError(f"expected an association with {dest.ae_title}@{dest.host}:{dest.port}; it was "
                           f"{'rejected' if assoc.is_rejected else 'aborted or unreachable'}")
    statuses: dict[str, int] = {}
    try:
        for o in objects:
            st = assoc.send_c_store(o.dataset)
            statuses[o.sop_uid] = int(getattr(st, "Status", 0xFFFF)) if st else 0xFFFF
    finally:
        assoc.release()
    return statuses


def send_stow(dest: StowDestination, objects: list[OutputObject]) -> dict[str, int]:
    """STOW-RS ``objects`` to ``dest`` (dicomweb-client).

    Returns:
        SOPInstanceUID → 0 when stored, 0xC000 when listed in FailedSOPSequence.
    """
    import os

    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    password = dest.password or (os.environ.get(dest.password_env) if dest.password_env else None)
    if dest.username:
        session.auth = (dest.username, password or "")
    client = DICOMwebClient(url=dest.url, session=session)
    try:
        answer = client.store_instances([o.dataset for o in objects])
    except (requests.RequestException, OSError) as exc:
        raise ServiceError(f"expected STOW-RS at {dest.url} to accept the results; {type(exc).__name__}: {exc}") \
            from None
    failed = {str(item.ReferencedSOPInstanceUID) for item in (answer.get("FailedSOPSequence") or [])}
    return {o.sop_uid: (0xC000 if o.sop_uid in failed else 0) for o in objects}
