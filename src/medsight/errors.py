"""MedSight's error types.

Every failure that a user can cause (a bad file, a bad config, a model file that is not one)
raises a subclass of :class:`MedSightError`. The message says what was expected and what was
found, in one line, so the CLI and the service can show it as it is. Nothing else escapes the
public API for bad input; anything that does is a bug.
"""

from __future__ import annotations

__all__ = [
    "MedSightError",
    "ConfigError",
    "DataError",
    "TrainingError",
    "ImageReadError",
    "UnsupportedFormatError",
    "CorruptFileError",
    "EmptyFileError",
    "MissingPixelDataError",
    "PixelDataError",
    "ImageTooLargeError",
    "InvalidValueError",
    "UnsafePathError",
    "SeriesError",
    "AmbiguousSeriesError",
    "GeometryError",
    "MaskAlignmentError",
    "ResponseError",
    "NoStudyError",
    "MixedPatientsError",
    "MissingMaskError",
    "StudyDateError",
    "ModelFileError",
    "ModelNotFoundError",
    "ShapeError",
    "ModalityError",
    "WriteError",
    "DeidentificationError",
    "ServiceError",
    "RefusedInputError",
    "AuthError",
]


class MedSightError(Exception):
    """Base class of every error MedSight raises for bad input or bad use.

    Args:
        message: one line that says what was expected and what was found.
        path: the file or folder concerned, when there is one.
    """

    def __init__(self, message: str, *, path: object | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(message)

    def __str__(self) -> str:
        message = super().__str__()
        if self.path and not message.startswith(self.path):
            return f"{self.path}: {message}"
        return message


class ConfigError(MedSightError):
    """A configuration file or override is invalid (unknown key, wrong type, bad value)."""


class DataError(MedSightError):
    """A dataset is unusable: labels out of range, an empty class folder, a bad manifest."""


class TrainingError(MedSightError):
    """Training cannot go on: the loss became NaN or infinite (a learning rate too high for the data)."""


class ImageReadError(MedSightError):
    """An image could not be read. Subclasses say why."""


class UnsupportedFormatError(ImageReadError):
    """The file is not in any format MedSight reads (judged by content, not name)."""


class CorruptFileError(ImageReadError):
    """The file claims a format but its content is damaged or truncated."""


class EmptyFileError(CorruptFileError):
    """The file has zero bytes."""


class MissingPixelDataError(ImageReadError):
    """A DICOM object without pixel data (a report, a structured document, a header only)."""


class PixelDataError(ImageReadError):
    """Pixel data exists but cannot be decoded (wrong length, unsupported compression)."""


class ImageTooLargeError(ImageReadError):
    """The file or its decoded pixels exceed the configured limits (decompression bombs)."""


class InvalidValueError(ImageReadError):
    """The pixel values are unusable (NaN or infinity)."""


class UnsafePathError(ImageReadError):
    """A path tries to leave its folder or archive (``..``, absolute paths, links)."""


class SeriesError(ImageReadError):
    """A DICOM series cannot be stacked into one volume (mixed orientation, gaps, sizes)."""


class AmbiguousSeriesError(SeriesError):
    """A folder holds several series and no rule chose one."""


class GeometryError(MedSightError):
    """Two images that must share a geometry do not (image and mask, for example)."""


class MaskAlignmentError(GeometryError):
    """A lesion mask does not lie on the slices of the image series it belongs to."""


class ResponseError(MedSightError):
    """A patient's serial studies cannot be assessed for response. Subclasses say why."""


class NoStudyError(ResponseError):
    """A folder given as a patient's serial studies holds no DICOM image study."""


class MixedPatientsError(ResponseError):
    """The studies in one folder belong to more than one patient."""


class MissingMaskError(ResponseError):
    """A study has no lesion mask (and no segmentation was asked for), or several and none chosen."""


class StudyDateError(ResponseError):
    """Studies cannot be put in time order: a study has no date, or two share one."""


class ModelFileError(MedSightError):
    """A path given as a model is not a MedSight model, or the model files are damaged."""


class ModelNotFoundError(ModelFileError):
    """No shipped model or model folder by that name."""


class ShapeError(MedSightError):
    """An input has the wrong number of dimensions or channels for the model."""


class ModalityError(MedSightError):
    """The image's modality is not one the model was trained on (a CT given to an X-ray model)."""


class WriteError(MedSightError):
    """A result could not be written."""


class DeidentificationError(MedSightError):
    """An object cannot be de-identified safely (burned-in identifiers, encrypted attributes)."""


class ServiceError(MedSightError):
    """The real-time service cannot do what was asked (bad request, peer unreachable)."""


class RefusedInputError(ServiceError):
    """An image sent to the service was refused.

    Attributes:
        code: why: ``corrupt``, ``not_image``, ``unknown_modality``, ``too_large`` or
            ``missing_uid``; the receiver turns it into a DICOM status or HTTP code.
    """

    def __init__(self, message: str, *, code: str, path: object | None = None) -> None:
        self.code = code
        super().__init__(message, path=path)


class AuthError(ServiceError):
    """A request had no token, a wrong token, or a token whose role may not do this."""
