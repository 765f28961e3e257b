"""Medical image input and output: one Image container, readers chosen by content, writers.

``read(path)`` is the one entry point: a DICOM file, a DICOM series folder, a zip of a study,
NIfTI, MetaImage (``.mhd``/``.mha``), PNG/JPEG/TIFF or NumPy, chosen by content. Results go out through
:mod:`medsight.io.dicom_out` (DICOM SEG, SR, Secondary Capture), :func:`write_nifti` and :func:`write_mhd`;
:mod:`medsight.io.deid` de-identifies for export. See docs/io.md.

Example:
    >>> import medsight.io as mio
    >>> image = mio.read("chest.dcm")          # doctest: +SKIP
    >>> image.shape, image.spacing, image.modality  # doctest: +SKIP
"""

from medsight.io.image import Image, Patient
from medsight.io.limits import ReadLimits
from medsight.io.registry import read, registered_formats
from medsight.io.sniff import sniff_format

__all__ = ["Image", "Patient", "ReadLimits", "read", "registered_formats", "sniff_format",
           "scan_folder", "read_series", "scan_studies", "write_nifti", "write_mhd", "describe"]

_LAZY = {
    "scan_folder": "medsight.io.series",
    "read_series": "medsight.io.series",
    "scan_studies": "medsight.io.studies",
    "write_nifti": "medsight.io.nifti",
    "write_mhd": "medsight.io.metaimage",
    "describe": "medsight.io.info",
}


def __getattr__(name: str):
    # Lazy so that `import medsight.io` does not import pydicom or nibabel.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)
