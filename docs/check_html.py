r"""Open built HTML pages in headless Chromium and report what a reader's browser would hit.

For each page: uncaught JavaScript exceptions, console errors, resources that failed to load
(stylesheets, scripts, fonts, figures) and images that did not decode. Talks to Chromium over
the DevTools protocol on a pipe (``--remote-debugging-pipe``), so it needs nothing but the
Python standard library and a ``chromium`` (or Chrome) executable.

Usage::

    python docs/check_html.py BUILD/index.html BUILD/auto_examples/plot_1_tutorial.html \\
        [--screenshots DIR]

Exits 0 when every page is clean, 1 when a page has a problem (each is listed), 2 when no
browser is found. On Debian: ``apt-get install chromium``.
"""

import argparse
import base64
import json
import os
import select
import shutil
import sys
import tempfile
import time
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")


def find_browser():
    """Path of a Chromium-family executable on PATH, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    """A headless Chromium driven over the DevTools protocol on file descriptors 3 and 4."""

    def __init__(self, executable, timeout=60.0):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="autopoly-chromium-")
        to_browser_r, self._to_browser = os.pipe()
        self._from_browser, from_browser_w = os.pipe()
        args = [
            executable,
            "--headless",
            "--remote-debugging-pipe",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--allow-file-access-from-files",
            f"--user-data-dir={self.profile}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        devnull = os.open(os.devnull, os.O_WRONLY)
        child_in, child_out = _high(to_browser_r), _high(from_browser_w)
        # The protocol's convention: the browser reads commands on fd 3 and writes on fd 4.
        self.pid = os.posix_spawn(
            executable,
            args,
            os.environ,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, child_in, 3),
                (os.POSIX_SPAWN_DUP2, child_out, 4),
                (os.POSIX_SPAWN_DUP2, devnull, 1),
                (os.POSIX_SPAWN_DUP2, devnull, 2),
            ],
        )
        for fd in (to_browser_r, from_browser_w, child_in, child_out, devnull):
            os.close(fd)
        self._buffer = b""
        self._next_id = 0
        self.events = []

    def send(self, method, params=None, session=None):
        """Send a command and wait for its result; events that arrive meanwhile are kept."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + self.timeout
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method} failed: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method, session, timeout):
        """Wait for an event (already received or not); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            if any(
                e.get("method") == method and e.get("sessionId") == session for e in self.events
            ):
                return True
            try:
                self.events.append(self._receive(deadline))
            except TimeoutError:
                return False

    def drain(self, seconds):
        """Collect the events of the next ``seconds`` (late errors, e.g. from timers)."""
        deadline = time.monotonic() + seconds
        while True:
            try:
                self.events.append(self._receive(deadline))
            except TimeoutError:
                return

    def _receive(self, deadline):
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_browser], [], [], left)[0]:
                raise TimeoutError("no answer from the browser")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise RuntimeError("the browser closed the DevTools pipe (did it crash?)")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self):
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        for fd in (self._to_browser, self._from_browser):
            os.close(fd)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG) != (0, 0):
                break
            time.sleep(0.1)
        else:
            os.kill(self.pid, 9)
            os.waitpid(self.pid, 0)
        shutil.rmtree(self.profile, ignore_errors=True)


def _high(fd):
    """A copy of ``fd`` numbered above 4, so that mapping it onto 3 or 4 cannot clobber it."""
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, 10)


BROKEN_IMAGES = """
Array.from(document.images)
    .filter(img => !img.complete || img.naturalWidth === 0)
    .map(img => img.currentSrc || img.src)
"""


def check_page(browser, path, screenshot=None, settle=1.0):
    """Load one page; return ``(problems, info)`` where problems is a list of strings."""
    url = Path(path).resolve().as_uri()
    target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    first_event = len(browser.events)
    for domain in ("Page", "Runtime", "Log", "Network"):
        browser.send(f"{domain}.enable", session=session)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    navigation = browser.send("Page.navigate", {"url": url}, session=session)
    problems = []
    if navigation.get("errorText"):
        problems.append(f"navigation failed: {navigation['errorText']}")
    elif not browser.wait_for("Page.loadEventFired", session, browser.timeout):
        problems.append("the page did not finish loading")
    browser.drain(settle)

    requests = {}
    for event in browser.events[first_event:]:
        if event.get("sessionId") != session:
            continue
        method, params = event.get("method"), event.get("params", {})
        if method == "Network.requestWillBeSent":
            requests[params["requestId"]] = params["request"]["url"]
        elif method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            problems.append(f"JavaScript exception: {text}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
            problems.append(f"console error: {args}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            entry = params["entry"]
            problems.append(f"browser error: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.loadingFailed" and not params.get("canceled"):
            where = requests.get(params["requestId"], "?")
            problems.append(f"failed to load {where}: {params.get('errorText')}")

    evaluate = {"expression": BROKEN_IMAGES, "returnByValue": True}
    broken = browser.send("Runtime.evaluate", evaluate, session=session)["result"]["value"]
    problems += [f"image did not load: {src}" for src in broken]
    info = browser.send(
        "Runtime.evaluate",
        {
            "expression": "({title: document.title, images: document.images.length})",
            "returnByValue": True,
        },
        session=session,
    )["result"]["value"]
    if screenshot:
        data = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)["data"]
        Path(screenshot).write_bytes(base64.b64decode(data))
    browser.send("Target.closeTarget", {"targetId": target})
    # Identical problems (e.g. one failed load logged twice) are reported once.
    return list(dict.fromkeys(problems)), info


def main(argv=None):
    """Check the pages given on the command line; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pages", nargs="+", help="HTML files to open")
    parser.add_argument("--screenshots", metavar="DIR", help="save a PNG of each page here")
    parser.add_argument("--browser", help="Chromium executable (default: found on PATH)")
    args = parser.parse_args(argv)
    executable = args.browser or find_browser()
    if executable is None:
        print(
            f"no browser found (looked for {', '.join(BROWSERS)}); "
            "on Debian: apt-get install chromium",
            file=sys.stderr,
        )
        return 2
    browser = Browser(executable)
    failed = False
    try:
        for page in args.pages:
            shot = None
            if args.screenshots:
                Path(args.screenshots).mkdir(parents=True, exist_ok=True)
                shot = Path(args.screenshots) / (Path(page).stem + ".png")
            problems, info = check_page(browser, page, shot)
            status = "ok" if not problems else f"{len(problems)} problem(s)"
            print(f"{page}: {status} (title {info['title']!r}, {info['images']} images)")
            for problem in problems:
                print(f"  - {problem}")
            failed |= bool(problems)
    finally:
        browser.close()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
