"""MetaImage (ITK MetaIO): a ``.mhd`` text header with a ``.raw``/``.zraw`` data file, or one ``.mha``.

The format LUNA16 ships. The header is ``Key = Value`` lines; ``ElementDataFile`` is the last
key and names the data: ``LOCAL`` (the bytes follow the header, ``.mha``) or a file next to the
header. Written by hand (docs/design.md, "Written by hand"): SimpleITK and ITK would add a
second, heavy imaging stack for a ~200-line text header and a NumPy view.

Geometry. MetaImage index ``(i, j, k)`` (x fastest in the file) maps to physical space by
``Offset + D @ (ElementSpacing * index)``, where column ``a`` of ``D`` is the ``a``-th triple
of ``TransformMatrix`` (as ITK's ``MetaImageIO`` reads it). ITK's physical space is LPS, the
same as DICOM's, so no sign flips are needed: the array is read as ``(k, j, i)`` = (z, y, x),
spacing and the direction's columns are reversed to that order, and ``Offset`` is the origin.
``AnatomicalOrientation`` is a label ITK does not use for geometry (LUNA16's ``RAI`` is ITK's
name for the identity direction: x from Right to left, y from Anterior, z from Inferior); it is
kept in ``meta`` and a warning is added when it contradicts ``TransformMatrix``.
``CenterOfRotation`` is ignored, as ITK does.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from medsight.errors import (
    CorruptFileError,
    InvalidValueError,
    PixelDataError,
    UnsafePathError,
    UnsupportedFormatError,
    WriteError,
)
from medsight.io.image import Image
from medsight.io.limits import ReadLimits, check_decoded_size, check_file_size
from medsight.io.registry import register_reader

__all__ = ["read_metaimage", "write_mhd", "read_header", "ELEMENT_TYPES", "MODALITIES"]

#: MetaIO element types and their NumPy types (byte order applied from the header).
ELEMENT_TYPES = {
    "MET_CHAR": "i1", "MET_UCHAR": "u1", "MET_SHORT": "i2", "MET_USHORT": "u2", "MET_INT": "i4",
    "MET_UINT": "u4", "MET_LONG": "i4", "MET_ULONG": "u4", "MET_LONG_LONG": "i8", "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4", "MET_DOUBLE": "f8",
}
_DTYPE_TO_MET = {"int8": "MET_CHAR", "uint8": "MET_UCHAR", "int16": "MET_SHORT", "uint16": "MET_USHORT",
                 "int32": "MET_INT", "uint32": "MET_UINT", "int64": "MET_LONG_LONG", "uint64": "MET_ULONG_LONG",
                 "float32": "MET_FLOAT", "float64": "MET_DOUBLE"}
#: MetaIO modality codes and the DICOM modality each becomes.
MODALITIES = {"MET_MOD_CT": "CT", "MET_MOD_MR": "MR", "MET_MOD_NM": "NM", "MET_MOD_US": "US",
              "MET_MOD_OTHER": "OT", "MET_MOD_UNKNOWN": "OT"}
_MODALITY_TO_MET = {"CT": "MET_MOD_CT", "MR": "MET_MOD_MR", "NM": "MET_MOD_NM", "US": "MET_MOD_US"}

_SYNONYMS = {"position": "offset", "origin": "offset", "rotation": "transformmatrix",
             "orientation": "transformmatrix", "elementbyteordermsb": "binarydatabyteordermsb"}
_MAX_HEADER = 1 << 20  # a header longer than 1 MiB is not a MetaImage header


def read_header(path: Path) -> tuple[dict[str, str], int]:
    """The header's keys (lower case, synonyms merged) and the byte offset where it ends.

    Raises:
        CorruptFileError: no ``ElementDataFile`` line, or a line that is not ``Key = Value``.
    """
    keys: dict[str, str] = {}
    with open(path, "rb") as f:
        offset = 0
        while True:
            raw = f.readline(_MAX_HEADER)
            if not raw:
                break
            offset += len(raw)
            if offset > _MAX_HEADER:
                break
            line = raw.decode("latin-1").strip()
            if not line:
                continue
            if "=" not in line:
                raise CorruptFileError(f"MetaImage header line {line[:60]!r} is not 'Key = Value'", path=path)
            key, value = (s.strip() for s in line.split("=", 1))
            k = _SYNONYMS.get(key.lower(), key.lower())
            keys[k] = value
            if k == "elementdatafile":
                return keys, offset
    raise CorruptFileError("MetaImage header has no ElementDataFile line (the header must end with it)",
                           path=path)


def _bool(keys: dict[str, str], key: str, default: bool = False) -> bool:
    v = keys.get(key)
    return default if v is None else v.strip().lower() in ("true", "1", "yes")


_NAMES = {"dimsize": "DimSize", "elementspacing": "ElementSpacing", "offset": "Offset",
          "transformmatrix": "TransformMatrix"}


def _numbers(keys: dict[str, str], key: str, n: int, path: Path, *, kind=float) -> list | None:
    v = keys.get(key)
    if v is None:
        return None
    key = _NAMES.get(key, key)
    try:
        values = [kind(x) for x in v.split()]
    except ValueError as exc:
        raise CorruptFileError(f"MetaImage {key!r} must be {n} numbers; got {v[:80]!r}", path=path) from exc
    if len(values) != n:
        raise CorruptFileError(f"MetaImage {key!r} must have {n} values (NDims); got {len(values)}: {v[:80]!r}",
                               path=path)
    return values


def _data_file(header: Path, name: str) -> Path:
    """The data file ``name`` names, refused when it would leave the header's folder."""
    if not name:
        raise CorruptFileError("ElementDataFile is empty", path=header)
    if name.upper() == "LIST" or name.split()[0].upper() == "LIST" or "%" in name:
        raise UnsupportedFormatError(f"ElementDataFile {name!r}: data split over several files (LIST or a "
                                     "file-name pattern) is not read; convert it to one .mha", path=header)
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or PureWindowsPath(name).drive:
        raise UnsafePathError(f"ElementDataFile {name!r} is an absolute path; it must name a file next to "
                              "the header", path=header)
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if ".." in parts:
        raise UnsafePathError(f"ElementDataFile {name!r} leaves the header's folder ('..')", path=header)
    folder = header.parent.resolve()
    data = header.parent.joinpath(*parts)
    if not data.resolve().is_relative_to(folder):
        raise UnsafePathError(f"ElementDataFile {name!r} resolves outside the header's folder (a link)",
                              path=header)
    return data


def _orientation_code(direction_xyz: np.ndarray) -> str:
    """ITK's three-letter 'from' code of a direction (identity is RAI)."""
    letters = (("R", "L"), ("A", "P"), ("I", "S"))  # the 'from' letter for +axis, -axis
    code = ""
    for a in range(direction_xyz.shape[1]):
        c = int(np.argmax(np.abs(direction_xyz[:, a])))
        code += letters[c][0 if direction_xyz[c, a] > 0 else 1]
    return code


@register_reader("metaimage")
def read_metaimage(path: Path, *, limits: ReadLimits, allow_nan: bool = False, modality: str | None = None,
                   **_: object) -> Image:
    """Read a MetaImage: a ``.mhd`` header with its data file, or a single ``.mha``.

    2D data becomes ``(1, y, x)``, 3D ``(1, z, y, x)``, 4D ``(t, z, y, x)`` (the 4th axis as
    channels, as for NIfTI); ``ElementNumberOfChannels`` > 1 gives channels too. Spacing is
    marked unknown (``meta["spacing_known"] = False``, 1 mm) when ``ElementSpacing`` is absent.

    Args:
        modality: the DICOM modality to give the image; default from the header's ``Modality``
            key (``MET_MOD_CT`` is CT), else ``"OT"`` (unknown; LUNA16's headers have none).
        allow_nan: accept NaN or infinity in float data.

    Raises:
        CorruptFileError: a bad header, a missing data file, a damaged value.
        UnsupportedFormatError: not an Image, NDims not 2, 3 or 4, an unknown ElementType, LIST data.
        UnsafePathError: ElementDataFile is absolute or leaves the header's folder.
        ImageTooLargeError: DimSize x element size over the budgets (checked before reading).
        PixelDataError: the data is shorter than the header says, or its compression is damaged.
        InvalidValueError: NaN or infinity in the data (unless ``allow_nan``).
    """
    keys, header_end = read_header(path)
    obj = keys.get("objecttype", "Image")
    if obj.lower() != "image":
        raise UnsupportedFormatError(f"MetaImage ObjectType is {obj!r}; only Image is read", path=path)
    try:
        ndims = int(keys.get("ndims", ""))
    except ValueError as exc:
        raise CorruptFileError(f"MetaImage NDims must be a whole number; got {keys.get('ndims')!r}", path=path) from exc
    if ndims not in (2, 3, 4):
        raise UnsupportedFormatError(f"MetaImage NDims is {ndims}; only 2, 3 or 4 dimensions are read", path=path)
    dims = _numbers(keys, "dimsize", ndims, path, kind=int)
    if dims is None:
        raise CorruptFileError("MetaImage header has no DimSize", path=path)
    if any(d <= 0 for d in dims):
        raise CorruptFileError(f"MetaImage DimSize must be positive; got {dims}", path=path)
    etype = keys.get("elementtype", "").upper()
    if etype not in ELEMENT_TYPES:
        raise UnsupportedFormatError(f"MetaImage ElementType {keys.get('elementtype')!r} is not one of "
                                     + ", ".join(ELEMENT_TYPES), path=path)
    msb = _bool(keys, "binarydatabyteordermsb")
    dtype = np.dtype(ELEMENT_TYPES[etype]).newbyteorder(">" if msb else "<")
    try:
        channels = int(keys.get("elementnumberofchannels", "1"))
    except ValueError:
        channels = 0
    if channels < 1 or (channels > 1 and ndims == 4):
        raise UnsupportedFormatError(f"MetaImage ElementNumberOfChannels {keys.get('elementnumberofchannels')!r} "
                                     f"with NDims {ndims} is not read", path=path)
    if not _bool(keys, "binarydata", True):
        raise UnsupportedFormatError("MetaImage BinaryData = False (ASCII voxel values) is not read", path=path)
    spacing = _numbers(keys, "elementspacing", ndims, path)
    spacing_known = spacing is not None
    if spacing is None:
        spacing = [1.0] * ndims
    if any(not math.isfinite(s) or s <= 0 for s in spacing):
        raise CorruptFileError(f"MetaImage ElementSpacing must be positive finite mm; got {spacing}", path=path)
    offset = _numbers(keys, "offset", ndims, path) or [0.0] * ndims
    matrix = _numbers(keys, "transformmatrix", ndims * ndims, path)
    direction = np.eye(ndims) if matrix is None else np.asarray(matrix, float).reshape(ndims, ndims).T
    if not np.all(np.isfinite(offset)) or not np.all(np.isfinite(direction)):
        raise CorruptFileError("MetaImage Offset or TransformMatrix holds a non-finite value", path=path)
    norms = np.linalg.norm(direction, axis=0)
    if np.any(norms < 1e-6):
        raise CorruptFileError(f"MetaImage TransformMatrix has a zero axis: {matrix}", path=path)
    direction = direction / norms

    shape_file = tuple(reversed(dims))  # (t, z, y, x): x fastest in the file
    full = shape_file + ((channels,) if channels > 1 else ())
    check_decoded_size(full, dtype.itemsize, limits, path, frame=(dims[1], dims[0], channels))
    expected = int(np.prod(full)) * dtype.itemsize

    name = keys["elementdatafile"]
    local = name.upper() == "LOCAL"
    data_path = path if local else _data_file(path, name)
    if not data_path.is_file():
        raise CorruptFileError(f"MetaImage data file {name!r} is missing (expected at {data_path})", path=path)
    size = check_file_size(data_path, limits)
    start = header_end if local else 0
    compressed = _bool(keys, "compresseddata")
    if not compressed and not local:
        try:
            hs = int(keys.get("headersize", "0"))
        except ValueError:
            hs = 0
        start = size - expected if hs == -1 else max(0, hs)
    with open(data_path, "rb") as f:
        f.seek(max(0, start))
        if compressed:
            buf = _inflate(f, expected, path, data_path)
        else:
            buf = f.read(expected)
    if len(buf) < expected:
        raise PixelDataError(f"MetaImage data {data_path.name!r} has {len(buf):,} bytes; DimSize "
                             f"{'x'.join(map(str, dims))} of {etype} needs {expected:,} (truncated)", path=path)
    data = np.frombuffer(buf, dtype=dtype, count=int(np.prod(full))).reshape(full)
    data = data.astype(dtype.newbyteorder("="), copy=True)  # native order, writable
    if data.dtype.kind == "f" and not allow_nan:
        bad = int(np.count_nonzero(~np.isfinite(data)))
        if bad:
            raise InvalidValueError(f"{bad} voxels are NaN or infinite", path=path)

    n_spatial = min(ndims, 3)
    if ndims == 4:
        arr = data  # (t, z, y, x): t as channels
    elif channels > 1:
        arr = np.ascontiguousarray(np.moveaxis(data, -1, 0))
    else:
        arr = data[None]
    d3 = np.zeros((3, n_spatial))
    d3[:n_spatial, :] = direction[:n_spatial, :n_spatial]
    origin = [float(o) for o in offset[:n_spatial]] + [0.0] * (3 - n_spatial)
    meta: dict[str, Any] = {"format": "metaimage", "spacing_known": spacing_known, "element_type": etype,
                            "data_file": None if local else data_path.name, "compressed": compressed}
    warnings: list[str] = []
    orient = keys.get("anatomicalorientation")
    if orient:
        meta["anatomical_orientation"] = orient
        actual = _orientation_code(d3)
        if "?" not in orient and orient.upper()[:n_spatial] != actual:
            warnings.append(f"AnatomicalOrientation {orient} contradicts TransformMatrix ({actual}); "
                            "the geometry follows TransformMatrix, as ITK does")
    if not spacing_known:
        warnings.append("no ElementSpacing: 1 mm assumed (meta spacing_known is False)")
    if warnings:
        meta["warnings"] = warnings
    header_modality = MODALITIES.get(keys.get("modality", "").upper(), "OT")
    return Image(array=arr, spacing=tuple(float(s) for s in spacing[:n_spatial])[::-1], origin=tuple(origin),
                 direction=d3[:, ::-1].copy(), modality=modality or header_modality, source=str(path), meta=meta)


def _inflate(f, expected: int, header: Path, data_path: Path) -> bytes:
    """Inflate zlib (or gzip) data, never past ``expected`` bytes (a bomb stops there)."""
    d = zlib.decompressobj(47)  # 32 + 15: zlib or gzip header, as MetaIO accepts
    out = bytearray()
    try:
        while len(out) < expected:
            if d.unconsumed_tail:
                chunk = d.unconsumed_tail
            else:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
            out += d.decompress(chunk, expected - len(out))
            if d.eof:
                break
    except zlib.error as exc:
        raise PixelDataError(f"MetaImage compressed data {data_path.name!r} is damaged (zlib: {exc})",
                             path=header) from exc
    return bytes(out)


def write_mhd(image: Image, path: str | Path, *, compress: bool = False, dtype: np.dtype | str | None = None) -> Path:
    """Write ``image`` as MetaImage: ``x.mhd`` + ``x.raw`` (``x.zraw`` when ``compress``), or one ``x.mha``.

    Geometry is written as ITK would (``Offset``, ``ElementSpacing``, ``TransformMatrix`` in LPS)
    and ``Modality`` for CT, MR, NM and US. A 3D image with several channels is written 4D.

    Returns:
        The header's path.

    Raises:
        WriteError: the name does not end in ``.mhd`` or ``.mha``, a 2D image is not in an
            axial plane, or the files cannot be written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".mhd", ".mha"):
        raise WriteError("a MetaImage name ends in .mhd or .mha", path=path)
    arr = image.array if dtype is None else image.array.astype(dtype)
    met = _DTYPE_TO_MET.get(np.dtype(arr.dtype).name)
    if met is None:
        raise WriteError(f"MetaImage cannot hold dtype {arr.dtype}", path=path)
    n = image.n_spatial
    direction = np.asarray(image.direction)[:, ::-1]  # columns x, y(, z)
    spacing = list(image.spacing)[::-1]
    origin = list(image.origin)
    channels = image.channels
    if n == 2:
        if np.any(np.abs(direction[2]) > 1e-9) or abs(origin[2]) > 1e-9:
            raise WriteError("a 2D MetaImage lies in the z = 0 plane; this image does not", path=path)
        direction, origin = direction[:2], origin[:2]
        dims = [arr.shape[2], arr.shape[1]]
        data = np.moveaxis(arr, 0, -1) if channels > 1 else arr[0]
    elif channels > 1:
        direction = np.pad(direction, ((0, 1), (0, 1)))
        direction[3, 3] = 1.0
        spacing, origin = spacing + [1.0], origin + [0.0]
        dims = [arr.shape[3], arr.shape[2], arr.shape[1], channels]
        data = arr
    else:
        dims = [arr.shape[3], arr.shape[2], arr.shape[1]]
        data = arr[0]
    ndims = len(dims)
    fmt = lambda v: " ".join(repr(float(x)) for x in v)  # noqa: E731 - repr keeps every digit
    lines = ["ObjectType = Image", f"NDims = {ndims}", "BinaryData = True", "BinaryDataByteOrderMSB = False",
             f"CompressedData = {compress}", f"TransformMatrix = {fmt(direction.T.ravel())}",
             f"Offset = {fmt(origin)}", f"CenterOfRotation = {' '.join(['0'] * ndims)}"]
    if ndims == 3:
        lines.append(f"AnatomicalOrientation = {_orientation_code(direction)}")
    lines += [f"ElementSpacing = {fmt(spacing)}", f"DimSize = {' '.join(map(str, dims))}"]
    if channels > 1 and n == 2:
        lines.append(f"ElementNumberOfChannels = {channels}")
    if image.modality in _MODALITY_TO_MET:
        lines.append(f"Modality = {_MODALITY_TO_MET[image.modality]}")
    payload = np.ascontiguousarray(data, dtype=np.dtype(arr.dtype).newbyteorder("<")).tobytes()
    if compress:
        payload = zlib.compress(payload, 6)
        lines.insert(5, f"CompressedDataSize = {len(payload)}")
    lines.append(f"ElementType = {met}")
    data_name = "LOCAL" if suffix == ".mha" else path.with_suffix(".zraw" if compress else ".raw").name
    lines.append(f"ElementDataFile = {data_name}")
    header = ("\n".join(lines) + "\n").encode("ascii")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if suffix == ".mha":
            path.write_bytes(header + payload)
        else:
            path.with_name(data_name).write_bytes(payload)
            path.write_bytes(header)
    except OSError as exc:
        raise WriteError(f"could not write MetaImage: {exc}", path=path) from exc
    return path
