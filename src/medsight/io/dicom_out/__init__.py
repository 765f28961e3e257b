"""DICOM results out: SEG for masks, Comprehensive 3D SR (TID 1500) for findings, Secondary
Capture for overlays, all built with highdicom. (Reading a SEG is the reader's business:
:mod:`medsight.io.dicom_seg`.)

Every object built here

* belongs to the source's study (same StudyInstanceUID; the patient and study modules are
  copied from the first source), so a PACS files it beside the images it was computed on;
* starts a new series with fresh SeriesInstanceUID and SOPInstanceUID (pass ``series_uid=`` /
  ``sop_uid=`` to choose them, e.g. to keep re-processing idempotent);
* references its source instances: SEG through ReferencedSeriesSequence and per-frame
  DerivationImageSequence, SR through CurrentRequestedProcedureEvidenceSequence and the
  measurement group's source images, SC through SourceImageSequence;
* names the algorithm that made it (:class:`Algorithm`): Manufacturer, ManufacturerModelName
  and SoftwareVersions, plus the SEG's AlgorithmIdentificationSequence and the SR's device
  observer context.

Where the source datasets come from:
    Callers that hold only an :class:`~medsight.io.image.Image` read by :func:`medsight.io.read`
    get its source headers with :func:`source_datasets`: DICOM readers record the files in
    ``image.meta["source_files"]`` in array order (slice ``k`` of the array came from file
    ``k``), and :func:`source_datasets` re-reads their headers (no pixel data). Callers that
    received datasets over the network pass those datasets directly. (A series read with
    ``allow_gaps=True`` may hold filled-in slices, listed in ``meta["filled_slices"]``; they
    have no source, so drop them from a mask before :func:`build_seg`.)

Modules: ``sources.py`` (source headers, their series order, the one-study check),
``codes.py`` (coded concepts, units, UIDs), ``algorithm.py`` (:class:`Algorithm`), ``sr.py``,
``seg.py`` (the one SEG builder: :func:`build_seg`, and :func:`build_mask_seg`, the path every
caller takes from a task's mask), ``sc.py`` and ``write.py`` (:func:`write_dicom`). Every
public name is exported here, so callers import from :mod:`medsight.io.dicom_out`.

Slice order of a SEG mask:
    ``mask[k]`` belongs to the ``k``-th source after sorting the sources as
    :func:`medsight.io.series.read_series` sorts slices: ascending by the projection of
    ImagePositionPatient on the slice normal ``cross(row cosine, column cosine)`` of
    ImageOrientationPatient, ties broken by InstanceNumber. So a mask computed on
    ``medsight.io.read(folder)`` pairs with ``source_datasets(image)`` as it is, and the
    order in which callers pass the sources does not matter. A single multi-frame source
    pairs frame ``k`` with ``mask[k]`` in frame order.

Codes:
    Finding names and segment labels without a standard code get a local code in the coding
    scheme ``99MEDSIGHT`` (declared in CodingSchemeIdentificationSequence), whose meaning is
    the name itself. Units are UCUM (``"1"``, ``"mm"``, ``"mL"``, ``"%"``, ...).

Example:
    >>> image = medsight.io.read("ct_folder")                        # doctest: +SKIP
    >>> srcs = source_datasets(image)                                 # doctest: +SKIP
    >>> seg = build_seg(srcs, mask, {1: "Nodule"}, algorithm=Algorithm("nodule-seg", "1.0.0"))  # doctest: +SKIP
    >>> write_dicom(seg, "out/seg.dcm")                               # doctest: +SKIP
"""

from medsight.io.dicom_out.algorithm import Algorithm
from medsight.io.dicom_out.codes import LOCAL_SCHEME
from medsight.io.dicom_out.sc import build_sc
from medsight.io.dicom_out.seg import build_mask_seg, build_seg
from medsight.io.dicom_out.sources import sort_like_series, source_datasets
from medsight.io.dicom_out.sr import Finding, Lesion, build_sr
from medsight.io.dicom_out.write import write_dicom

__all__ = [
    "Algorithm",
    "Finding",
    "Lesion",
    "build_sr",
    "build_sc",
    "build_seg",
    "build_mask_seg",
    "write_dicom",
    "source_datasets",
    "sort_like_series",
    "LOCAL_SCHEME",
]
