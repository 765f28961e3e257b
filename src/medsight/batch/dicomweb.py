"""A DICOMweb (QIDO-RS) query as a batch's input list, and its inputs fetched by WADO-RS.

``medsight batch --qido URL`` takes a QIDO-RS URL at any level, with its query parameters as
the filters (``.../dicom-web/studies?ModalitiesInStudy=CR&StudyDate=20260101-20261130``,
``.../studies/{uid}/series?Modality=CT``, ``.../instances?...``). The query is run once, when
the list is made, and gives one input per instance for a 2D model or one per series for a 3D
model, each named by its WADO-RS URL, ``{root}/studies/{st}/series/{se}[/instances/{sop}]``,
sorted. Those names are the list that a resumed file run, or the run in the database, keeps.

Each input is fetched just before its chunk is predicted (:func:`fetch_inputs`), one instance
at a time into a temporary folder that is deleted after the chunk, so memory holds one
instance, not a study. A series is fetched as its instances (QIDO-RS lists them first).

Credentials come from the environment, never from the URL (the URL is stored in every result
line): ``MEDSIGHT_DICOMWEB_TOKEN`` (a bearer token, e.g. a MedSight reader token for its
``/dicom-web`` proxy), or ``MEDSIGHT_DICOMWEB_USER`` and ``MEDSIGHT_DICOMWEB_PASSWORD`` (basic).

dicomweb-client runs the QIDO-RS searches, paged by :func:`search_all`, not by its own
``get_remaining``: that loop ends only on an empty page, and Orthanc (1.10, DICOMweb plugin 1.7)
ignores ``offset`` when a query filters on ModalitiesInStudy, so it returned the same studies
forever while memory grew (measured here). WADO-RS is requested by hand for the reason given in
:mod:`medsight.service.catchup`: Orthanc's parts lack the Part 10 preamble, which
dicomweb-client's reader refuses; here each part is rewritten as a Part 10 file.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from medsight.errors import ConfigError, DataError

__all__ = ["is_dicomweb", "list_qido", "fetch_inputs", "search_all"]

_ACCEPT = 'multipart/related; type="application/dicom"; transfer-syntax=*'
_LEVELS = ("studies", "series", "instances")
_NOT_FILTERS = {"limit", "offset", "includefield", "fuzzymatching"}
TIMEOUT_S = 60.0
PAGE = 500  # QIDO-RS answers asked for at a time


def search_all(search: Any, uid_tag: str, *, page: int = PAGE, **kwargs: Any) -> list[dict[str, Any]]:
    """Every answer of a dicomweb-client search (``client.search_for_studies`` ...), page by page.

    The pages end at an empty or short page, or at a page that brings no UID (``uid_tag``) not
    seen before: a server that ignores ``offset`` answers its whole list again, which ends here
    instead of looping.
    """
    seen: dict[str, dict[str, Any]] = {}
    offset = 0
    while True:
        answers = search(offset=offset, limit=page, get_remaining=False, **kwargs)
        new = 0
        for a in answers:
            uid = _uid(a, uid_tag)
            if uid is not None and uid not in seen:
                seen[uid] = a
                new += 1
        if not new or len(answers) < page:
            return list(seen.values())
        offset += len(answers)


def is_dicomweb(name: str) -> bool:
    """Whether a batch input is a DICOMweb URL (else it is a path)."""
    return name.startswith(("http://", "https://"))


def _session() -> Any:
    try:
        import requests
    except ImportError:  # pragma: no cover - requests comes with the service extra
        raise ConfigError("a DICOMweb input needs the service extra: pip install 'medsight[service]'") from None
    s = requests.Session()
    token = os.environ.get("MEDSIGHT_DICOMWEB_TOKEN")
    if token:
        s.headers["Authorization"] = f"Bearer {token}"
    elif os.environ.get("MEDSIGHT_DICOMWEB_USER"):
        s.auth = (os.environ["MEDSIGHT_DICOMWEB_USER"], os.environ.get("MEDSIGHT_DICOMWEB_PASSWORD", ""))
    return s


def _parse(url: str) -> tuple[str, list[str], dict[str, Any]]:
    """``url`` as (DICOMweb root, the path's segments after it, the filters)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--qido must be an http(s) QIDO-RS URL; got {url!r}")
    if parts.username or parts.password:
        raise ConfigError("--qido must not carry credentials (they would be stored with every result); set "
                          "MEDSIGHT_DICOMWEB_TOKEN, or MEDSIGHT_DICOMWEB_USER and MEDSIGHT_DICOMWEB_PASSWORD")
    segs = [s for s in parts.path.split("/") if s]
    at = next((k for k, s in enumerate(segs) if s in _LEVELS), None)
    rest = segs[at:] if at is not None else []
    shapes = (["studies"], ["series"], ["instances"], ["studies", "*", "series"], ["studies", "*", "instances"],
              ["studies", "*", "series", "*", "instances"])
    if not any(len(rest) == len(s) and all(a == "*" or a == b for a, b in zip(s, rest)) for s in shapes):
        raise ConfigError(f"--qido must be a QIDO-RS search URL (.../studies, .../studies/{{uid}}/series, "
                          f".../instances, ...); got the path {parts.path!r}")
    root = urlunsplit((parts.scheme, parts.netloc, "/" + "/".join(segs[:at]), "", "")).rstrip("/")
    filters: dict[str, Any] = {}
    for key, value in parse_qsl(parts.query, keep_blank_values=False):
        if key.lower() not in _NOT_FILTERS:
            filters[key] = value
    return root, rest, filters


def list_qido(url: str, *, per: str) -> list[str]:
    """The WADO-RS URLs of what the query ``url`` matches: one per instance (``per="instance"``)
    or per series (``per="series"``), sorted.

    Raises:
        ConfigError: ``url`` is not a QIDO-RS search URL.
        DataError: the server does not answer, or answers something that is not QIDO-RS.
    """
    from dicomweb_client.api import DICOMwebClient

    root, rest, filters = _parse(url)
    session = _session()
    client = DICOMwebClient(url=root, session=session, timeout=TIMEOUT_S)
    study = rest[1] if len(rest) > 2 else None
    series = rest[3] if len(rest) > 4 else None
    out: set[str] = set()
    try:
        if rest[-1] == "studies":
            studies = [_uid(s, "0020000D") for s in search_all(client.search_for_studies, "0020000D",
                                                                             search_filters=filters)]
            found = [x for st in studies for x in _below(client, st, per, {})]
        elif rest[-1] == "series":
            found = [(_uid(s, "0020000D") or study, _uid(s, "0020000E"), None)
                     for s in search_all(client.search_for_series, "0020000E", study_instance_uid=study,
                                         search_filters=filters)]
            if per == "instance":
                found = [x for st, se, _ in found for x in _below(client, st, per, {}, series=se)]
        else:
            found = [(_uid(i, "0020000D") or study, _uid(i, "0020000E") or series, _uid(i, "00080018"))
                     for i in search_all(client.search_for_instances, "00080018", study_instance_uid=study,
                                         series_instance_uid=series, search_filters=filters)]
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise DataError(f"{root}: the QIDO-RS answer lacks a UID ({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # requests' and dicomweb-client's errors: the server, not the input
        raise DataError(f"{root}: the QIDO-RS search failed: {type(exc).__name__}: {exc}") from None
    for st, se, sop in found:
        if not st or not se or (per == "instance" and not sop):
            raise DataError(f"{root}: a QIDO-RS answer lacks its study, series or instance UID")
        out.add(f"{root}/studies/{st}/series/{se}" + (f"/instances/{sop}" if per == "instance" else ""))
    return sorted(out)


def _uid(item: dict[str, Any], tag: str) -> str | None:
    value = item.get(tag, {}).get("Value")
    return str(value[0]) if value else None


def _below(client: Any, study: str | None, per: str, filters: dict[str, Any], *,
           series: str | None = None) -> list[tuple[str | None, str | None, str | None]]:
    if per == "series" and series is None:
        return [(study, _uid(s, "0020000E"), None)
                for s in search_all(client.search_for_series, "0020000E", study_instance_uid=study,
                                    search_filters=filters)]
    return [(study, _uid(i, "0020000E") or series, _uid(i, "00080018"))
            for i in search_all(client.search_for_instances, "00080018", study_instance_uid=study,
                                series_instance_uid=series, search_filters=filters)]


def fetch_inputs(names: list[str], folder: str | Path) -> tuple[list[str], dict[int, str]]:
    """Fetch the DICOMweb inputs among ``names`` into ``folder`` (paths are left as they are).

    Returns:
        The local path of each input (a file per instance, a folder per series), and the
        inputs that could not be fetched (position → reason); the others are unaffected.
    """
    session = _session()
    folder = Path(folder)
    paths: list[str] = []
    errors: dict[int, str] = {}
    for k, name in enumerate(names):
        if not is_dicomweb(name):
            paths.append(name)
            continue
        try:
            if "/instances/" in name:
                paths.append(str(_fetch_instance(session, name, folder / f"{k}.dcm")))
            else:
                target = folder / f"series{k}"
                target.mkdir()
                for n, url in enumerate(_series_instances(session, name)):
                    _fetch_instance(session, url, target / f"{n:05d}.dcm")
                paths.append(str(target))
        except DataError as exc:
            paths.append("")
            errors[k] = str(exc)
    return paths, errors


def _series_instances(session: Any, series_url: str) -> list[str]:
    import requests

    try:
        r = session.get(f"{series_url}/instances", headers={"Accept": "application/dicom+json"}, timeout=TIMEOUT_S)
        if r.status_code != 200:
            raise DataError(f"{series_url}: QIDO-RS answered HTTP {r.status_code} for the series' instances")
        sops = sorted(str(i["00080018"]["Value"][0]) for i in r.json())
    except requests.RequestException as exc:
        raise DataError(f"{series_url}: cannot list the series' instances: {type(exc).__name__}") from None
    except (ValueError, KeyError, IndexError, TypeError):
        raise DataError(f"{series_url}: the QIDO-RS answer is not a list of instances") from None
    if not sops:
        raise DataError(f"{series_url}: the series has no instance")
    return [f"{series_url}/instances/{sop}" for sop in sops]


def _fetch_instance(session: Any, url: str, path: Path) -> Path:
    """WADO-RS one instance and write it as a Part 10 file."""
    import pydicom
    import requests
    from pydicom.errors import InvalidDicomError

    from medsight.io.multipart import MultipartError, split_related

    try:
        r = session.get(url, headers={"Accept": _ACCEPT}, timeout=TIMEOUT_S)
    except requests.RequestException as exc:
        raise DataError(f"{url}: cannot fetch it: {type(exc).__name__}") from None
    if r.status_code != 200:
        raise DataError(f"{url}: WADO-RS answered HTTP {r.status_code}")
    try:
        parts = split_related(r.headers.get("content-type", ""), r.content, max_parts=1)
    except MultipartError as exc:
        raise DataError(f"{url}: the WADO-RS answer is not whole: {exc}") from None
    if not parts:
        raise DataError(f"{url}: expected WADO-RS to answer multipart/related with one DICOM part; got "
                        f"{r.headers.get('content-type') or 'no content type'}")
    try:
        ds = pydicom.dcmread(io.BytesIO(parts[0][1]), force=True)
        ds.save_as(path, enforce_file_format=True)
    except (InvalidDicomError, AttributeError, ValueError, TypeError, OSError) as exc:
        raise DataError(f"{url}: the WADO-RS part is not a DICOM instance ({type(exc).__name__})") from None
    return path
