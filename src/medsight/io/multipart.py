"""``multipart/related`` bodies (DICOMweb STOW-RS requests, WADO-RS answers), split with the
standard library's MIME parser (``email``), which implements RFC 2046; no hand-written
boundary scanning."""

from __future__ import annotations

from medsight.errors import MedSightError

__all__ = ["MultipartError", "TooManyPartsError", "split_related"]


class MultipartError(MedSightError, ValueError):
    """A multipart/related body that is not whole (no closing boundary); its message is
    MedSight's own, so it reaches error bodies and logs unscrubbed."""


class TooManyPartsError(MultipartError):
    """A multipart/related body with more parts than allowed."""


def split_related(content_type: str, body: bytes, *, max_parts: int | None = None) -> list[tuple[str, bytes]] | None:
    """The parts of a ``multipart/related`` body as ``(content type, payload)`` pairs.

    Args:
        content_type: the body's Content-Type header (with its ``boundary`` parameter).
        body: the whole body.
        max_parts: refuse bodies with more parts than this before splitting them.

    Returns:
        The parts in order, or None when ``content_type`` is not multipart/related with a
        boundary (the caller says what it expected).

    Raises:
        TooManyPartsError: more than ``max_parts`` parts.
        MultipartError: the body ends without its closing boundary (a truncated body, whose
            last part would carry the bytes of a partial delimiter).
    """
    from email import errors, policy
    from email.parser import BytesParser

    if not content_type.lower().startswith("multipart/related"):
        return None
    head = b"Content-Type: " + content_type.encode() + b"\r\n\r\n"
    parser = BytesParser(policy=policy.HTTP)
    boundary = parser.parsebytes(head, headersonly=True).get_boundary()
    if not boundary:
        return None
    if max_parts is not None:
        # every part starts with a delimiter line, so this bounds the part count without parsing
        delimiters = body.startswith(b"--" + boundary.encode()) + body.count(b"\n--" + boundary.encode())
        if delimiters > max_parts + 1:
            raise TooManyPartsError(f"expected at most {max_parts} parts; the body has more")
    msg = parser.parsebytes(head + body)
    if not msg.is_multipart():
        return None
    if any(isinstance(d, errors.CloseBoundaryNotFoundDefect) for d in msg.defects):
        raise MultipartError(f"expected the closing boundary --{boundary}--; the body ends without it (truncated?)")
    return [(part.get_content_type(), part.get_payload(decode=True) or b"") for part in msg.iter_parts()]
