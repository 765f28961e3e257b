"""The OHIF viewer served by MedSight at /viewer, in a real browser (Debian's chromium through
Playwright), reading a real Orthanc through MedSight's /dicom-web proxy with the signed-in
reader's token. A hippocampus MR series and a chest X-ray are stored in Orthanc (as a modality
would); MedSight's catch-up takes them from there, and its SEG, SR and SC go to Orthanc beside them.

Checked here, as a radiologist would go:

* without a token, /viewer sends the browser to the sign-in and /dicom-web refuses;
* signed in on the dashboard, the worklist and the study page link to the viewer; OHIF's study
  list shows both studies with MedSight's SEG, SR and SC beside them (MR\\SEG\\SR, CR\\OT\\SR);
* the MR study, opened from its dashboard page, draws its images; its SEG ("MedSight
  hippocampus-mri segmentation") loads as an overlay and the segmentation panel lists its two
  segments by name, "Anterior" and "Posterior", in MedSight's colours;
* the viewer's header links back to the dashboard's page of the study it shows;
* the X-ray study, opened from its result's link, shows MedSight's SR on the image: its
  probabilities, the operating threshold and the finding site, and the overlay's series says
  it is not for diagnosis;
* no request of the page goes anywhere but the service, and none carries the token in its URL.

A CT nodule's SR in the viewer is checked in test_nodule_e2e.py (viewer-ct-nodule-sr.png).

Screenshots (looked at): viewer-study-list.png, viewer-mr-seg.png (the mask on the MR with the
segment list), viewer-xr-sr.png (the SR's text beside the X-ray), in the e2e artifacts folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from e2e.helpers import wait_for
from e2e.stack import TOKENS

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]
SHOTS = Path(os.environ.get("MEDSIGHT_E2E_ARTIFACTS", "/tmp/medsight-e2e/artifacts"))


def _need_viewer() -> None:
    from medsight.service.viewer import viewer_dir

    if not (viewer_dir() / ".installed").is_file():
        pytest.skip(f"the OHIF viewer is not installed in {viewer_dir()} (run scripts/install_viewer.sh)")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (run `make peers`)")


def _dismiss(page) -> None:
    """OHIF's first-visit tour and its investigational-use notice, where they show."""
    for label in ("Skip all", "Confirm and hide"):
        button = page.locator(f"text={label}")
        if button.count():
            button.first.click()


def _segment_colours(page) -> dict[str, str]:
    """Segment name → the CSS colour of its dot, for each row of OHIF's segmentation panel."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-cy=data-row]')]
      .filter((row) => row.querySelector('[data-cy=data-row-title]')
        && row.querySelector('[data-cy=data-row-colorhex]'))
      .map((row) => [row.querySelector('[data-cy=data-row-title]').textContent.trim(),
                     getComputedStyle(row.querySelector('[data-cy=data-row-colorhex]')).backgroundColor]))""")


def _show_sr(page, thumbnail: str, text: str, images: str) -> bool:
    """Open an SR in the viewport (double-click its thumbnail) until its text is drawn.

    OHIF 3.13 sometimes shows an SR's viewport without drawing its annotations (seen in about
    half the runs when the SR is opened soon after the study): opening the images again and
    then the SR draws them."""
    for attempt in range(3):
        if attempt:
            page.dblclick(images)
            page.wait_for_timeout(3000)
        page.dblclick(thumbnail)
        for _ in range(15):
            if page.locator(f"tspan:has-text('{text}')").count():
                return True
            page.wait_for_timeout(1000)
    return False


def test_a_radiologist_reads_medsights_seg_and_sr_in_the_viewer(stack, xray_file, mr_series):
    _need_viewer()
    sync_api = pytest.importorskip("playwright.sync_api")
    from medsight.palette import label_rgb

    xr_path, xr = xray_file("positive", patient_id="E2E-VIEW-XR", name="VIEWER^XRAY")
    mr = mr_series(patient_id="E2E-VIEW-MR")
    for p in [xr_path, *mr["paths"]]:  # the modality stores in the PACS; MedSight's catch-up takes them from there
        stack.orthanc.upload(Path(p).read_bytes())
    wait_for(lambda: stack.service.get(f"/api/v1/results?study_uid={mr['study']}").json(), timeout=120,
             what="the MR series' segmentation result")

    def modalities(study: str) -> set[str]:  # through the proxy, as the viewer asks
        series = stack.service.get(f"/dicom-web/studies/{study}/series", role="reader").json()
        return {s["00080060"]["Value"][0] for s in series}

    wait_for(lambda: {"MR", "SEG", "SR"} <= modalities(mr["study"]), timeout=120,
             what="MedSight's SEG and SR in Orthanc")
    wait_for(lambda: {"CR", "OT", "SR"} <= modalities(xr.StudyInstanceUID), timeout=60,
             what="MedSight's SR and overlay in Orthanc")
    SHOTS.mkdir(parents=True, exist_ok=True)
    base = stack.service.http
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        # no token: the viewer page sends the browser to the sign-in; the proxy refuses
        anon = browser.new_page()
        anon.goto(base + "/viewer/")
        anon.wait_for_url(base + "/ui/?next=*", timeout=30000)
        assert anon.evaluate("() => fetch('/dicom-web/studies').then(r => r.status)") == 401
        anon.close()

        page = browser.new_page(viewport={"width": 1400, "height": 900})
        requests: list[str] = []
        data: dict[str, str] = {}  # every answer that held DICOM (JSON or multipart): URL → its Accept
        console: list[str] = []
        page.on("request", lambda r: requests.append(r.url))
        page.on("response", lambda r: data.setdefault(r.url, r.request.headers.get("accept", ""))
                if r.status == 200 and ("dicom" in r.headers.get("content-type", "")
                                        or "multipart" in r.headers.get("content-type", "")) else None)
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}"[:300]))
        page.on("response", lambda r: console.append(f"HTTP {r.status} {r.url}"[:300]) if r.status >= 400 else None)

        def failed(what: str) -> AssertionError:
            page.screenshot(path=str(SHOTS / "viewer-failed.png"))
            return AssertionError(f"{what}; the page said:\n" + "\n".join(console[-40:]) + "\nrequests:\n"
                                  + "\n".join(requests[-30:]))

        # the study list, reached from the sign-in as a bookmark would
        page.goto(base + "/ui/?next=" + "/viewer/")
        page.fill("#token", TOKENS["reader"])
        page.click("#signin button[type=submit]")
        page.wait_for_url(base + "/viewer/**", timeout=30000)
        try:
            page.wait_for_selector("text=HIPPO, TEST", timeout=90000)
        except sync_api.TimeoutError:
            raise failed("the study list did not show the MR study") from None
        page.wait_for_selector("text=VIEWER, XRAY", timeout=30000)
        listed = page.inner_text("body")
        assert "MR\\SEG\\SR" in listed and "CR\\OT\\SR" in listed  # MedSight's results beside the images
        page.screenshot(path=str(SHOTS / "viewer-study-list.png"))

        # the dashboard links to the viewer: the worklist row, and the study page
        page.goto(base + "/ui/#/worklist")
        page.wait_for_selector("#worklist a.viewer", timeout=30000)
        page.goto(base + f"/ui/#/study/{mr['study']}")
        page.click("h2 a.viewer", timeout=30000)
        page.wait_for_url(f"{base}/viewer/viewer?StudyInstanceUIDs={mr['study']}", timeout=30000)
        try:
            page.wait_for_selector("text=MedSight hippocampus-mri segmentation", timeout=90000)
        except sync_api.TimeoutError:
            raise failed("the MR study did not list MedSight's SEG") from None
        page.wait_for_function("() => [...document.querySelectorAll('canvas')].some(c => c.width > 100)",
                               timeout=60000)
        page.wait_for_timeout(2000)
        _dismiss(page)
        # the SEG as an overlay: OHIF asks first, then lists the segments by name
        page.dblclick("text=MedSight hippocampus-mri segmentation")
        page.click("button:has-text('Yes')", timeout=30000)
        if not page.locator("text=Posterior").count():
            page.click("[data-cy=panelSegmentation-btn]")
        try:
            page.wait_for_selector("text=Posterior", timeout=60000)
        except sync_api.TimeoutError:
            raise failed("the SEG's segments were not listed") from None
        panel = page.inner_text("body")
        assert "Anterior" in panel and "Posterior" in panel and "Segmentations" in panel
        colours = _segment_colours(page)
        for number, name in ((1, "Anterior"), (2, "Posterior")):  # the SEG's recommended colours, as drawn
            assert name in colours, f"no colour dot found for {name}: {colours}"
            got = [int(v) for v in colours[name].split("(")[1].split(")")[0].split(",")[:3]]
            assert max(abs(a - b) for a, b in zip(got, label_rgb(number))) <= 3, (name, got)
        assert not any("EvalError" in line or "Error loading displaySet" in line for line in console)
        page.wait_for_timeout(2000)  # the mask drawn
        page.screenshot(path=str(SHOTS / "viewer-mr-seg.png"))
        # and back: the viewer's header links to the dashboard's page of the study it shows
        page.click("#medsight-dashboard")
        page.wait_for_url(f"{base}/ui/#/study/{mr['study']}", timeout=30000)
        page.wait_for_selector(".result h3 a.viewer", timeout=30000)  # still signed in: the study's results

        # the X-ray, opened from its result on the dashboard: MedSight's SR drawn on the image
        page.goto(base + f"/ui/#/study/{xr.StudyInstanceUID}")
        page.click(".result h3 a.viewer", timeout=30000)
        page.wait_for_url(f"{base}/viewer/viewer?StudyInstanceUIDs={xr.StudyInstanceUID}*", timeout=30000)
        try:
            page.wait_for_selector("text=MedSight pneumonia-xray heatmap (not for diagnosis)", timeout=90000)
        except sync_api.TimeoutError:
            raise failed("the X-ray study did not list MedSight's overlay") from None
        page.wait_for_timeout(2000)
        _dismiss(page)
        page.wait_for_function("() => [...document.querySelectorAll('canvas')].some(c => c.width > 100)",
                               timeout=60000)
        page.wait_for_timeout(3000)
        # MedSight's SR is series 901, the X-ray series 1
        if not _show_sr(page, "text=S:901", "Probability of pneumonia", "text=PA CHEST"):
            raise failed("MedSight's SR was not shown on the X-ray")
        drawn = " ".join(page.locator("tspan").all_text_contents())
        assert "Operating threshold" in drawn and "Chest" in drawn  # the threshold, and the finding site
        assert not any("Error Boundary" in line for line in console)
        page.screenshot(path=str(SHOTS / "viewer-xr-sr.png"))
        browser.close()
    outside = [u for u in requests if not u.startswith(base) and not u.startswith(("data:", "blob:"))]
    assert outside == []
    assert any("/dicom-web/studies" in u for u in requests)
    assert not any("token=" in u for u in requests)  # the token never went into a request's URL
    # every answer that carried patient data came from /dicom-web, and each one, asked again
    # with the reader's token, is given; without it, refused (401; after 10 refusals the address
    # is locked out, 429: the service's limit on failed authentications, a refusal too)
    assert data and all(u.startswith(base + "/dicom-web/") for u in data), sorted(data)[:5]
    kinds = {u.split("?")[0].rsplit("/", 1)[-1] if "/frames/" not in u else "frames" for u in data}
    # the searches, the metadata, the images' frames, and the SEG (OHIF 3.13 retrieves its instance whole)
    assert {"studies", "series", "metadata", "frames"} <= kinds, kinds
    assert any(u.split("?")[0].rsplit("/instances/", 1)[-1].replace(".", "").isdigit() for u in data), kinds
    import httpx

    for url, accept in data.items():
        answer = httpx.get(url, headers={"Accept": accept, "Authorization": f"Bearer {TOKENS['reader']}"}, timeout=30)
        assert answer.status_code == 200, url
    refused = [httpx.get(url, headers={"Accept": accept}, timeout=30).status_code for url, accept in data.items()]
    assert refused[0] == 401 and set(refused) <= {401, 429}, refused
