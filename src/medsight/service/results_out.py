"""Results back to the PACS: an SR with the findings, a Secondary Capture with the overlay
(heatmap, mask picture, detections), a SEG for masks, built by :mod:`medsight.io.dicom_out`
and sent by C-STORE (pynetdicom) or STOW-RS (dicomweb-client).

The UIDs of every object are derived from the result's key, so a result sent twice (its
worker was killed after sending, before acknowledging) is the same instance twice, and the
PACS keeps one.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medsight.errors import ServiceError
from medsight.service.config import DicomDestination, OutputsConfig, StowDestination

__all__ = ["OutputObject", "build_outputs", "send_dicom", "send_stow", "derived_uid", "source_sop_uids"]

log = logging.getLogger(__name__)


#: Namespace of the name-based UUIDs behind :func:`derived_uid` (fixed: changing it would
#: give every result new UIDs, and a PACS a second copy of everything re-sent). It is
#: uuid5(NAMESPACE_URL, "medsight:service:result-uids").
_UID_NAMESPACE = uuid.UUID("9646f8e0-a6a4-5058-ac6b-3c04495596ca")


def derived_uid(*parts: str) -> str:
    """A UID that depends only on ``parts``: ``2.25.<int>`` of a name-based UUID (RFC 4122
    version 5) of the parts, so the same result always gives the same instances.

    (pydicom's ``generate_uid(prefix=None, entropy_srcs=...)`` ignores its entropy and returns a
    random UUID, which is why it is not used here.)
    """
    name = "\x1f".join(str(p) for p in parts)  # a separator no UID or key holds: ("ab", "c") != ("a", "bc")
    return f"2.25.{uuid.uuid5(_UID_NAMESPACE, name).int}"


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
    """A stored result's findings (its ``findings`` rows, in the order the result listed them)."""
    if result.findings:
        return [f.to_finding() for f in result.findings]
    return _legacy_findings(result)


def _legacy_findings(result: Any) -> list[Any]:
    """The findings of a result stored by a MedSight older than the findings table, read from
    its outputs under the names :meth:`medsight.tasks.results.Result.findings` gives them now."""
    from medsight.tasks.results import Finding

    out, outputs = [], result.outputs or {}
    for label, p in (outputs.get("probabilities") or {}).items():
        out.append(Finding(f"probability_{label}", float(p), "1", title=f"Probability of {label}"[:64]))
    if result.threshold is not None:
        out.append(Finding("threshold", float(result.threshold), "1", title="Operating threshold"))
    if result.label:
        out.append(Finding("decision", text=str(result.label), title="Decision"))
    for name, v in (outputs.get("volumes_ml") or {}).items():
        out.append(Finding(f"volume_ml_{name}", float(v), "mL", title=f"Volume of {name}"[:64]))
    old = outputs.get("findings")  # a mapping then (a detector's outputs list its nodules here now)
    for name, v in (old if isinstance(old, dict) else {}).items():
        if isinstance(v, (int, float)):
            out.append(Finding(name, float(v), "mm" if name.endswith("_mm") else "1"))
    return out


def source_sop_uids(result: Any) -> list[str] | None:
    """The SOPInstanceUIDs a result was computed on, when it records them (a segmentation's
    mask lists its source instances in slice order); None for "its instance or its series"."""
    uids = ((result.outputs or {}).get("mask") or {}).get("sop_uids")
    return [str(u) for u in uids] if uids else None


def _seg(result: Any, sources: list[Any], algo: Any) -> Any | None:
    """The DICOM SEG of a result's stored mask, or None when the mask is empty.

    Raises:
        WriteError: the mask file is gone or unreadable, a source instance is missing, or the
            sources do not sort into the mask's slice order.
    """
    from medsight.errors import MedSightError, WriteError
    from medsight.io import read
    from medsight.io.dicom_out import build_mask_seg

    mask_info = result.outputs["mask"]
    try:
        mask = read(mask_info["path"])
    except MedSightError as exc:
        raise WriteError(f"cannot read the stored mask of result {result.id}: {exc}") from exc
    labels = {int(k): str(v) for k, v in (result.outputs.get("labels") or {}).items()}
    try:
        return build_mask_seg(sources, mask.array[0], labels, algorithm=algo, source_uids=source_sop_uids(result) or [],
                              series_uid=derived_uid(result.series_uid, result.model, "SEG"),
                              sop_uid=derived_uid(result.key, "SEG"))
    except WriteError as exc:
        raise WriteError(f"result {result.id}: {exc}") from exc


def _overlay_source(result: Any, sources: list[Any]) -> Any | None:
    """The source an overlay was drawn on: the result's single instance, or the slice of its
    series the overlay shows (``overlay_sop_uid``, a detector's slice through its top finding);
    None when that is not known (a 3D mask's picture is not sent as an SC)."""
    if len(sources) == 1:
        return sources[0]
    uid = (result.outputs or {}).get("overlay_sop_uid")
    return next((ds for ds in sources if uid and str(ds.get("SOPInstanceUID", "")) == uid), None)


def build_outputs(result: Any, sources: list[Any], cfg: OutputsConfig) -> list[OutputObject]:
    """The DICOM objects for one stored result.

    An SR with the findings (probabilities, decision, structure volumes in mL, a measurement
    group per nodule...), a Secondary Capture of the overlay (the heatmap or mask picture of a
    single image, or a detector's picture of the slice through its top finding, on that
    slice), and a SEG of a segmentation's mask (none when the mask is empty). Every UID derives
    from the result's key.

    Args:
        result: a :class:`~medsight.service.db.Result` row with status ``ok``.
        sources: the source datasets (headers are enough): the result's instance, or the
            instances listed by :func:`source_sop_uids`, or its series.
        cfg: the ``outputs`` section.

    Raises:
        WriteError: an object cannot be built from these sources (see :func:`_seg`).
    """
    from medsight.io.dicom_out import Algorithm, build_sc
    from medsight.tasks.writers import findings_sr

    algo = Algorithm(result.model, result.model_version, cfg.manufacturer)
    out: list[OutputObject] = []
    key = result.key
    if cfg.send_sr:
        sr = findings_sr(_findings(result), sources, algorithm=algo, title=f"MedSight {result.model}"[:64],
                         series_uid=derived_uid(result.series_uid, result.model, "SR"), sop_uid=derived_uid(key, "SR"))
        if sr is not None:
            out.append(OutputObject("SR", sr))
    shown_on = _overlay_source(result, sources)
    if cfg.send_sc and result.overlay_path and Path(result.overlay_path).is_file() and shown_on is not None:
        from PIL import Image as PILImage

        with PILImage.open(result.overlay_path) as im:
            rgb = np.asarray(im.convert("RGB"))
        outputs = result.outputs or {}
        picture = "mask" if outputs.get("mask") else "heatmap" if outputs.get("heatmap") else "overlay"
        sc = build_sc(shown_on, rgb, algorithm=algo, series_description=f"MedSight {result.model} {picture}"[:64],
                      series_uid=derived_uid(result.series_uid, result.model, "SC"), sop_uid=derived_uid(key, "SC"))
        out.append(OutputObject("SC", sc))
    if cfg.send_seg and (result.outputs or {}).get("mask"):
        seg = _seg(result, sources, algo)
        if seg is not None:
            out.append(OutputObject("SEG", seg))
    return out


def send_dicom(dest: DicomDestination, objects: list[OutputObject], *, calling_aet: str) -> dict[str, int]:
    """C-STORE ``objects`` to ``dest`` over one association.

    Returns:
        SOPInstanceUID → DICOM status of each object the PACS answered for (an object missing
        from it got no answer: the association was lost before).

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
            if not assoc.is_established:
                break  # the PACS went away mid-batch: the rest have no status (not sent)
            try:
                st = assoc.send_c_store(o.dataset)
            except RuntimeError:  # the association dropped while sending
                break
            if st:  # an empty answer is no confirmation: the object stays unsent
                statuses[o.sop_uid] = int(getattr(st, "Status", 0xFFFF))
    finally:
        if assoc.is_established:
            assoc.release()
    return statuses


def send_stow(dest: StowDestination, objects: list[OutputObject]) -> dict[str, int]:
    """STOW-RS ``objects`` to ``dest`` (dicomweb-client).

    Returns:
        SOPInstanceUID → 0 when listed in ReferencedSOPSequence (stored), 0xC000 when listed in
        FailedSOPSequence; an object the answer does not list is not confirmed (absent).
    """

    import requests
    from dicomweb_client.api import DICOMwebClient

    session = requests.Session()
    password = dest.secret()
    if dest.username:
        session.auth = (dest.username, password or "")
    client = DICOMwebClient(url=dest.url, session=session, timeout=dest.timeout_s)
    client.set_http_retry_params(retry=False)  # the send job retries, with its backoff and re-drive
    try:
        answer = client.store_instances([o.dataset for o in objects])
    except (requests.RequestException, OSError, ValueError) as exc:
        # the exception's text may echo the request or the server's body: only its type and status
        code = getattr(getattr(exc, "response", None), "status_code", None)
        raise ServiceError(f"expected STOW-RS at {dest.name} to accept the results; {type(exc).__name__}"
                           + (f" (HTTP {code})" if code else "")) from None
    failed = {str(item.ReferencedSOPInstanceUID) for item in (answer.get("FailedSOPSequence") or [])}
    stored = {str(item.ReferencedSOPInstanceUID) for item in (answer.get("ReferencedSOPSequence") or [])}
    return {**{u: 0 for u in stored}, **{u: 0xC000 for u in failed}}
