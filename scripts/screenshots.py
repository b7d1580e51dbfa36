"""Write ``docs/overview.png`` and ``docs/job-page.png``: the pages as the demo leaves them.

Runs ``modelarts-monitor demo --keep-running`` (the real daemon against the simulator) on a
free loopback port, waits until the scenario has played out (what the overview shows says so:
bert-pretrain Completed, resnet-finetune Failed, data-sweep gone, llama-sft's hang cleared),
then has headless Debian ``chromium`` (through Playwright, never a downloaded browser) take a
full-page screenshot of the overview and of the failed job's page.

    .venv/bin/python scripts/screenshots.py [--out docs]
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SPEED = 1.0
"""At the scenario's own pace: the simulator dates runs in scenario seconds, which only speed 1
keeps on the wall clock that dates the phases, so the charts of one page agree."""
FAILED = "resnet-finetune"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def played_out(url: str) -> bool:
    """The demo's story has ended: every job in its final phase, the deleted one gone."""
    try:
        page = httpx.get(url + "/", timeout=2).text
        usage = httpx.get(url + "/metrics", timeout=2).text
    except httpx.HTTPError:
        return False
    final = all(f">{phase}<" in page for phase in ("Completed", "Failed", "Terminated"))
    hang_cleared = 'modelarts_monitor_events_total{type="hang_cleared"} 1' in usage
    return final and ">gone<" in page and hang_cleared


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    args = parser.parse_args()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    demo = subprocess.Popen(  # noqa: S603 - this interpreter, arguments of our own
        [sys.executable, "-m", "monitor", "demo", "--speed", str(SPEED),
         "--listen", f"127.0.0.1:{port}", "--keep-running"],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while not played_out(url):
            if demo.poll() is not None or time.monotonic() > deadline:
                print("the demo did not play out", file=sys.stderr)
                return 1
            time.sleep(0.2)
        job_id = re.search(rf"href='/jobs/([^']+)'>{FAILED}<", httpx.get(url + "/").text)
        assert job_id, f"{FAILED} is not on the overview"
        args.out.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(url + "/")
            page.screenshot(path=str(args.out / "overview.png"), full_page=True)
            page.goto(f"{url}/jobs/{job_id[1]}")
            page.screenshot(path=str(args.out / "job-page.png"), full_page=True)
            browser.close()
    finally:
        demo.terminate()
        demo.wait(timeout=20)
    print(f"wrote {args.out / 'overview.png'} and {args.out / 'job-page.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
