"""Look at TensorBoard as a person would: a real server on localhost and headless Chromium.

Used by the browser test and by ``docs/make_screenshot.py`` (the README's replay screenshot). Needs the
Debian packages ``chromium`` and ``chromium-driver`` and the PyPI package ``selenium``.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator

CHROMIUM = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver"

# Collects every element, descending into shadow roots (TensorBoard's dashboards are web components).
_ALL_ELEMENTS_JS = """
const all = (root) => { const out = [];
  for (const el of root.querySelectorAll('*')) { out.push(el); if (el.shadowRoot) out.push(...all(el.shadowRoot)); }
  return out; };
"""


def browser_missing() -> str | None:
    """Why a browser check cannot run here, or None when it can."""
    if not any(shutil.which(c) for c in CHROMIUM):
        return "Chromium is not installed (Debian package `chromium`)"
    if not shutil.which(CHROMEDRIVER):
        return "ChromeDriver is not installed (Debian package `chromium-driver`)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def tensorboard_server(logdir: str, timeout: float = 90.0) -> Iterator[str]:
    """Serve ``logdir`` on a free localhost port; yields the base URL, stops the server on exit."""
    port = _free_port()
    cmd = [
        sys.executable,
        "-m",
        "tensorboard.main",
        "--logdir",
        logdir,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--reload_interval",
        "1",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"tensorboard exited: {proc.stderr.read().decode()[-500:]}")
            with contextlib.suppress(OSError):
                with urllib.request.urlopen(f"{url}/data/logdir", timeout=2):
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"tensorboard did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator:
    """A headless Chromium driven by Selenium, with the network chatter of a fresh profile turned off."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = next(c for c in CHROMIUM if shutil.which(c))
    with tempfile.TemporaryDirectory() as profile:
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            f"--window-size={width},{height}",
            f"--user-data-dir={profile}",
        ):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console messages: driver.get_log
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            yield driver
        finally:
            driver.quit()


def wait_for_images(driver, tag: str, timeout: float = 60.0) -> dict:
    """Wait until the page shows ``tag`` and at least one loaded image; returns what was found."""
    js = (
        _ALL_ELEMENTS_JS
        + """
    const els = all(document);
    const text = els.map(e => (e.shadowRoot ? '' : (e.textContent || ''))).join(' ');
    const imgs = els.filter(e => e.tagName === 'IMG' && e.complete && e.naturalWidth > 0);
    return {hasTag: text.includes(arguments[0]), images: imgs.length,
            sizes: imgs.map(i => [i.naturalWidth, i.naturalHeight])};
    """
    )
    deadline = time.monotonic() + timeout
    found = {}
    while time.monotonic() < deadline:
        found = driver.execute_script(js, tag)
        if found["hasTag"] and found["images"] > 0:
            return found
        time.sleep(1.0)
    raise TimeoutError(f"TensorBoard did not show {tag!r} with an image within {timeout:.0f} s: {found}")
