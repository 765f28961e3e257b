"""Medical image input and output: one Image container, readers chosen by content, writers.

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
           "scan_folder", "write_nifti"]


def __getattr__(name: str):
    # Lazy so that `import medsight.io` does not import pydicom or nibabel.
    if name == "scan_folder":
        from medsight.io.series import scan_folder

        return scan_folder
    if name == "write_nifti":
        from medsight.io.nifti import write_nifti

        return write_nifti
    raise AttributeError(name)
