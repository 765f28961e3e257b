"""Benchmark of the viewer on a 300-slice CT through the service's DICOMweb proxy (issue 14), on
127.0.0.1 only.

The study (synthetic): ``make_chest_ct`` at 300x512x512 (seed 3), written as a 300-file DICOM
CT series (int16, 512 KiB of pixels a slice, 157 MB in all) and stored in a real Orthanc (its
DICOMweb plugin, authentication on). ``medsight serve`` runs with ``viewer.dicomweb_url`` on that
Orthanc and nothing routed, so the service only serves the viewer and the proxy. Debian's
chromium (Playwright, software GL) signs in with a reader token and opens the study in OHIF:

1. **time to first image**: from asking for the viewer's page to the first slice drawn (a
   canvas with pixels that are not all black), and OHIF's own ``studyToFirstImage`` timer;
2. **the whole study**: the page then steps through every slice (the arrow key, as a reader
   scrolls) until all 300 frames came through the proxy: the time, and how many bytes;
3. **the service's memory** (``/proc/<pid>/status`` VmRSS of ``medsight serve``, sampled every
   10 ms): before the page opens, its peak while the study streams, and after; "flat" means the
   peak over the baseline is a small fraction of the 157 MB that went through.

Usage:
    .venv/bin/python benchmarks/bench_viewer.py [--slices 300] [--json benchmarks/results/viewer.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_detect_ct import write_ct_series  # noqa: E402

from e2e.stack import TOKENS, ServiceProcess  # noqa: E402
from support.peers import Orthanc, free_port  # noqa: E402

FLAGS = ["--headless", "--no-sandbox", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--use-gl=swiftshader", "--enable-unsafe-swiftshader"]


class RssSampler:
    """VmRSS of one process every 10 ms: its peak, and the trace (seconds, MB)."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.trace, self._stop = pid, 0, [], threading.Event()

    def rss(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return 0

    def start(self) -> RssSampler:
        self.t0 = time.perf_counter()
        self.base = self.peak = self.rss()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            r = self.rss()
            self.peak = max(self.peak, r)
            self.trace.append((round(time.perf_counter() - self.t0, 2), round(r / 1e6, 1)))

    def stop(self) -> None:
        self._stop.set()
        self._t.join()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "viewer.json")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from medsight.data.synthetic_ct import make_chest_ct

    work = Path(tempfile.mkdtemp(prefix="bench-viewer-"))
    image, _, _ = make_chest_ct(args.seed, shape_zyx=(args.slices, args.size, args.size),
                                spacing_zyx=(1.0, 0.7, 0.7))
    write_ct_series(work / "ct", image)
    files = sorted((work / "ct").glob("*.dcm"))
    with Orthanc(work / "orthanc") as pacs:
        t = time.perf_counter()
        for f in files:
            pacs.upload(f.read_bytes())
        upload_s = time.perf_counter() - t
        import pydicom

        study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
        config = {"storage": {"path": str(work / "medsight-data")},
                  "dicom": {"port": free_port()}, "http": {"port": free_port()},
                  "auth": {"tokens": [{"name": f"bench-{r}", "role": r, "token": t} for r, t in TOKENS.items()]},
                  "viewer": {"dicomweb_url": f"{pacs.url}/dicom-web", "username": pacs.user,
                             "password": pacs.password}, "log_level": "WARNING"}
        service = ServiceProcess(work, config).start()
        base = service.http
        try:
            out = open_study(sync_playwright, base, study, service.proc.pid, args.slices)
        finally:
            service.stop()
    out.update(slices=args.slices, rows=args.size, columns=args.size, study_mb=round(sum(
        f.stat().st_size for f in files) / 1e6, 1), orthanc_upload_s=round(upload_s, 1), synthetic_seed=args.seed)
    print(json.dumps({k: v for k, v in out.items() if k != "rss_trace"}, indent=1))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))


def open_study(sync_playwright, base: str, study: str, pid: int, slices: int) -> dict:
    frames: dict[str, int] = {}
    seen: dict[str, float] = {}  # when (s after asking for the page) the first frame came, and OHIF drew it
    timers: dict[str, float] = {}
    t0 = [0.0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.add_init_script("performance.setResourceTimingBufferSize(100000)")  # every frame's size

        def on_response(r) -> None:
            if "/frames/" in r.url and r.status == 200:
                seen.setdefault("first_frame", time.perf_counter() - t0[0])
                frames[r.url] = 1

        def on_console(m) -> None:
            if m.text.startswith(("studyToFirstImage:", "displaySetsToFirstImage:")):
                name, value = m.text.split(":", 1)
                timers[name] = float(value.strip().split()[0]) / 1000
                seen.setdefault(name, time.perf_counter() - t0[0])

        page.on("response", on_response)
        page.on("console", on_console)
        page.goto(base + "/ui/")  # the reader's token, as the dashboard keeps it
        page.evaluate(f"() => sessionStorage.setItem('medsight-token', '{TOKENS['reader']}')")
        page.goto(base + "/viewer/")  # the viewer's files once, as for a reader who has used it before
        page.wait_for_timeout(3000)
        rss = RssSampler(pid).start()
        t0[0] = time.perf_counter()
        page.goto(f"{base}/viewer/viewer?StudyInstanceUIDs={study}")
        deadline = time.perf_counter() + 120
        while "studyToFirstImage" not in seen and time.perf_counter() < deadline:
            page.wait_for_timeout(20)
        page.wait_for_timeout(500)
        page.screenshot(path=str(Path(tempfile.gettempdir()) / "bench-viewer-first.png"))
        rss_first = rss.rss()
        page.mouse.click(700, 450)  # focus the viewport; step through the stack as a reader scrolls
        for _ in range(slices):
            page.keyboard.press("ArrowDown")
            page.wait_for_timeout(15)
        deadline = time.perf_counter() + 300
        while len(frames) < slices and time.perf_counter() < deadline:
            page.keyboard.press("ArrowDown")
            page.wait_for_timeout(200)
        all_s = time.perf_counter() - t0[0]
        sizes = page.evaluate("""() => performance.getEntriesByType('resource')
            .filter((e) => e.name.includes('/frames/')).map((e) => e.decodedBodySize)""")
        page.wait_for_timeout(2000)
        rss.stop()
        page.screenshot(path=str(Path(tempfile.gettempdir()) / "bench-viewer-last.png"))
        browser.close()
    return {"first_frame_response_s": round(seen.get("first_frame", -1), 2),
            "time_to_first_image_s": round(seen.get("studyToFirstImage", -1), 2),
            "ohif_study_to_first_image_s": timers.get("studyToFirstImage"),
            "frames_fetched": len(frames), "all_frames_s": round(all_s, 1),
            "frame_bytes_mb": round(sum(sizes) / 1e6, 1), "frame_bytes_min_kb": round(min(sizes or [0]) / 1e3, 1),
            "service_rss_before_mb": round(rss.base / 1e6, 1),
            "service_rss_at_first_image_mb": round(rss_first / 1e6, 1),
            "service_rss_peak_mb": round(rss.peak / 1e6, 1), "service_rss_after_mb": round(rss.rss() / 1e6, 1),
            "service_rss_peak_over_before_mb": round((rss.peak - rss.base) / 1e6, 1),
            "rss_trace": rss.trace[::20]}


if __name__ == "__main__":
    main()
