"""``/viewer``: the OHIF viewer, served by the service, reading its images through the service's
``/dicom-web`` proxy (:mod:`medsight.service.api_dicomweb`) with the reader's token.

The files are OHIF's prebuilt ``@ohif/app``, installed by ``scripts/install_viewer.sh`` (pinned
version and SHA-512; rewritten for the ``/viewer/`` prefix). Like the dashboard's ``/ui/``, the
files hold no patient data and are served without a token; every data request goes to
``/dicom-web/...``, which needs one.

``/viewer/app-config.js`` is MedSight's own, made here: one DICOMweb data source, this
service's ``/dicom-web``, and no other (no local files, no ``?url=`` sources). The token: the
dashboard keeps the reader's token in ``sessionStorage`` (per tab, never sent to the server by
itself). Before OHIF starts, app-config.js wraps ``XMLHttpRequest`` and ``fetch`` so that every
request to this service's ``/dicom-web/`` carries it as ``Authorization: Bearer`` (OHIF's own
``?token=`` parameter is read only by its viewer route, not by its study list, and would put
the token into a URL). So the token is never in a URL.

Where no token is stored, the page goes to the dashboard's sign-in, which comes back here.

CSP for the viewer's pages: scripts only from the service (plus the hashes of index.html's two
inline scripts), WebAssembly (its image decoders) and workers from the service or ``blob:``;
``'unsafe-eval'`` because OHIF's SEG loader needs it (see :func:`_csp`).

The dashboard links here (:func:`viewer_url`): a study opens on its images, a result on the
series it was computed on, with MedSight's SEG and SR beside it in the study browser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

__all__ = ["OHIF_VERSION", "viewer_dir", "app_config_js", "mount_viewer", "viewer_url"]

OHIF_VERSION = "3.13.2"  # scripts/install_viewer.sh installs this one


def viewer_url(cfg: Any, study_uid: str | None, series_uid: str | None = None) -> str | None:
    """The viewer's page for a study (opened on ``series_uid`` when given), or None when the
    service has no viewer (``viewer.dicomweb_url`` unset) or the study has no UID."""
    from urllib.parse import urlencode

    if not cfg.viewer.dicomweb_url or not study_uid:
        return None
    query = {"StudyInstanceUIDs": study_uid, **({"initialSeriesInstanceUID": series_uid} if series_uid else {})}
    return f"/viewer/viewer?{urlencode(query)}"


def viewer_dir(configured: str | None = None) -> Path:
    """Where OHIF's files are: ``viewer.ohif_dir``, else ``$MEDSIGHT_VIEWER_DIR/ohif-<version>``,
    else ``<source tree>/.viewer/ohif-<version>`` (where the install script puts them)."""
    if configured:
        return Path(configured)
    env = os.environ.get("MEDSIGHT_VIEWER_DIR", "").strip()
    if env:
        return Path(env) / f"ohif-{OHIF_VERSION}"
    return Path(__file__).resolve().parents[3] / ".viewer" / f"ohif-{OHIF_VERSION}"


def app_config_js() -> str:
    """OHIF's ``window.config``: this service's ``/dicom-web`` as its one data source."""
    source = {
        "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
        "sourceName": "medsight",
        "configuration": {
            "friendlyName": "MedSight (the PACS, through the service)",
            "name": "medsight",
            "qidoRoot": "__ROOT__", "wadoRoot": "__ROOT__", "wadoUriRoot": "__ROOT__",
            "qidoSupportsIncludeField": False, "imageRendering": "wadors", "thumbnailRendering": "wadors",
            "enableStudyLazyLoad": True, "supportsFuzzyMatching": False, "supportsWildcard": False,
            "staticWado": False, "singlepart": "bulkdata,video",
            "bulkDataURI": {"enabled": True, "relativeResolution": "studies"},
            "omitQuotationForMultipartRequest": True,
        },
    }
    config = {"routerBasename": "/viewer", "extensions": [], "modes": [], "customizationService": {},
              "showStudyList": True, "maxNumberOfWebWorkers": 2, "showWarningMessageForCrossOrigin": False,
              "showCPUFallbackMessage": True, "showLoadingIndicator": True, "strictZSpacingForVolumeViewport": True,
              "defaultDataSourceName": "medsight", "dataSources": [source]}
    config["whiteLabeling"] = "__LOGO__"
    body = json.dumps(config, indent=1).replace('"__ROOT__"', "root").replace('"__LOGO__"', "whiteLabeling")
    return f"""// MedSight's configuration of OHIF {OHIF_VERSION} (medsight/service/viewer.py): made by the service.
(function () {{
  // the dashboard's token (this tab's sessionStorage) on every request to this service's /dicom-web
  var token = sessionStorage.getItem("medsight-token");
  if (!token) {{
    window.location.replace("/ui/?next=" + encodeURIComponent(window.location.pathname + window.location.search));
    return;
  }}
  var ours = function (url) {{
    try {{
      var u = new URL(url, window.location.href);
      return u.origin === window.location.origin && u.pathname.indexOf("/dicom-web/") === 0;
    }} catch (e) {{ return false; }}
  }};
  var X = XMLHttpRequest.prototype, open = X.open, setHeader = X.setRequestHeader, send = X.send;
  X.open = function (method, url) {{ this.medsightAuth = ours(url); return open.apply(this, arguments); }};
  X.setRequestHeader = function (name, value) {{
    if (this.medsightAuth && String(name).toLowerCase() === "authorization") return;  // ours only
    return setHeader.apply(this, arguments);
  }};
  X.send = function () {{
    if (this.medsightAuth) setHeader.call(this, "Authorization", "Bearer " + token);
    return send.apply(this, arguments);
  }};
  var fetch0 = window.fetch;
  window.fetch = function (input, init) {{
    var url = typeof input === "string" || input instanceof URL ? String(input) : input.url;
    if (ours(url)) {{
      init = Object.assign({{}}, init);
      var headers = new Headers(init.headers || (input instanceof Request ? input.headers : undefined));
      headers.set("Authorization", "Bearer " + token);
      init.headers = headers;
    }}
    return fetch0.call(this, input, init);
  }};
}})();
var root = window.location.origin + "/dicom-web";
// the header's logo is a link back to MedSight's dashboard: the study open here, else the worklist
var whiteLabeling = {{
  createLogoComponentFn: function (React) {{
    var study = (new URLSearchParams(window.location.search).get("StudyInstanceUIDs") || "").split(",")[0];
    var href = /^[0-9.]{{1,64}}$/.test(study) ? "/ui/#/study/" + study : "/ui/#/worklist";
    return React.createElement("a", {{href: href, id: "medsight-dashboard", target: "_self",
      title: "Back to MedSight's dashboard", style: {{color: "#8fd3ff", fontWeight: 600, marginLeft: 8}}}},
      "MedSight dashboard");
  }}
}};
window.config = {body};
"""


def _csp(index_html: str) -> str:
    """The viewer's Content-Security-Policy: scripts from this service and OHIF's own inline
    scripts (by hash) only; nothing may be fetched or framed from elsewhere.

    It allows ``'unsafe-eval'`` (the dashboard's does not): the ndarray library under
    cornerstone's DICOM SEG loader compiles its array classes with ``new Function``, and without
    it no SEG opens (EvalError, measured with OHIF 3.13.2). No script source is widened by it:
    a script injected from elsewhere is still refused."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in re.findall(r"<script>(.*?)</script>", index_html, flags=re.S))
    return ("default-src 'self'; "
            f"script-src 'self' 'unsafe-eval' 'wasm-unsafe-eval' {hashes}; worker-src 'self' blob:; "
            "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
            "connect-src 'self' blob: data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
            "frame-ancestors 'none'")


def mount_viewer(app: Any, configured: str | None = None) -> None:
    """Add ``/viewer`` and ``/viewer/...`` to ``app`` (a 404 with the install command when the
    viewer's files are absent)."""
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response

    folder = viewer_dir(configured)
    config_js = app_config_js()  # the same for every request
    page: dict[str, Any] = {}  # the installed index.html and its CSP, read once (per install)

    def index() -> tuple[str, str]:
        stamp = (folder / ".installed").stat().st_mtime_ns
        if page.get("stamp") != stamp:
            html = (folder / "index.html").read_text(encoding="utf-8")
            page.update(stamp=stamp, html=html, csp=_csp(html))
        return page["html"], page["csp"]

    def missing() -> JSONResponse:
        return JSONResponse({"error": f"the viewer is not installed in {folder}: run scripts/install_viewer.sh "
                                      f"(OHIF {OHIF_VERSION})"}, status_code=404)

    @app.get("/viewer", include_in_schema=False)
    def viewer_root() -> RedirectResponse:
        return RedirectResponse("/viewer/")

    @app.get("/viewer/app-config.js", include_in_schema=False)
    def viewer_config() -> Response:
        return Response(config_js, media_type="text/javascript", headers={"Cache-Control": "no-store"})

    @app.get("/viewer/{path:path}", include_in_schema=False)
    def viewer_file(path: str) -> Any:
        if not (folder / ".installed").is_file():
            return missing()
        root = folder.resolve()
        target = (root / path).resolve() if path else root
        if root != target and root not in target.parents:
            return JSONResponse({"error": "not a file of the viewer"}, status_code=404)
        html, csp = index()  # the CSP on every file: a worker's script runs under its own response's policy
        if target.is_file() and target.name != ".installed":
            headers = {"Content-Security-Policy": csp}
            if ".bundle." in target.name or target.suffix == ".wasm":  # content-hashed names
                headers["Cache-Control"] = "public, max-age=86400"
            return FileResponse(target, headers=headers)
        # the viewer's own routes (/viewer/viewer?StudyInstanceUIDs=..., the study list): its page
        return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"})
