"""``multipart/related`` bodies (DICOMweb STOW-RS requests, WADO-RS answers), split with the
standard library's MIME parser (``email``), which implements RFC 2046; no hand-written
boundary scanning."""

from __future__ import annotations

__all__ = ["split_related"]


def split_related(content_type: str, body: bytes) -> list[tuple[str, bytes]] | None:
    """The parts of a ``multipart/related`` body as ``(content type, payload)`` pairs.

    Returns:
        The parts in order, or None when ``content_type`` is not multipart/related with a
        boundary (the caller says what it expected).
    """
    from email import policy
    from email.parser import BytesParser

    if not content_type.lower().startswith("multipart/related"):
        return None
    msg = BytesParser(policy=policy.HTTP).parsebytes(b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    if not msg.is_multipart():
        return None
    return [(part.get_content_type(), part.get_payload(decode=True) or b"") for part in msg.iter_parts()]
