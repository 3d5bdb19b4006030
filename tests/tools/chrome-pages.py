#!/usr/bin/env python3
"""Load several pages in one headless Chromium and keep each page's DOM and
a PNG screenshot once a condition holds in every page.

    chrome-pages.py [--timeout S] [--until JS] OUTDIR NAME=URL...

One Chromium start costs 45 to 120 s in a TCG guest, so the pages share one:
each gets its own tab, all load at once.  Chromium is driven over
--remote-debugging-pipe (the DevTools protocol on file descriptors 3 and 4,
messages ended by a NUL byte), so no WebSocket library is needed.

For each NAME the page is polled every 0.2 s with the JavaScript expression
--until (default: true) until it is true; then OUTDIR/NAME.html (the
serialized DOM) and OUTDIR/NAME.png are written.  A page whose condition
does not hold within --timeout seconds still gets both files, and the exit
status is 1; a Chromium that does not start or answer makes it 2.  Each
page's time to its condition is printed as "NAME: ready after S s".
"""

import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Chrome:
    def __init__(self, user_dir):
        cmd_r, cmd_w = os.pipe()  # we write commands, Chromium reads fd 3
        evt_r, evt_w = os.pipe()  # Chromium writes fd 4, we read
        args = [
            "chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-dev-shm-usage", "--no-first-run",
            "--user-data-dir=" + user_dir, "--window-size=1280,900",
            # Every page polls at its own pace: without these, the pages
            # Chromium deems in the background have their timers throttled
            # (one of the two pages got 4 scrapes while the other got 33).
            # Nor does it spend the guest's CPU on its own background work.
            "--disable-background-timer-throttling",
            "--disable-backgrounding-occluded-windows",
            "--disable-renderer-backgrounding",
            "--disable-background-networking", "--disable-component-update",
            "--disable-default-apps", "--disable-sync", "--mute-audio",
            "--remote-debugging-pipe", "about:blank",
        ]

        def fds():
            # via fresh numbers, so that neither end is already 3 or 4
            r, w = os.dup(cmd_r), os.dup(evt_w)
            os.dup2(r, 3)
            os.dup2(w, 4)

        # close_fds would close 3 and 4 after fds() ran; every other
        # descriptor of ours is close-on-exec (PEP 446)
        self.proc = subprocess.Popen(args, preexec_fn=fds, close_fds=False,
                                     stdout=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(evt_w)
        self.w = os.fdopen(cmd_w, "wb", buffering=0)
        self.r = os.fdopen(evt_r, "rb", buffering=0)
        self.buf = b""
        self.next_id = 0

    def _recv(self):
        while b"\0" not in self.buf:
            chunk = self.r.read(65536)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self.buf += chunk
        msg, self.buf = self.buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.w.write(json.dumps(msg).encode() + b"\0")
        while True:
            m = self._recv()
            if m.get("id") == self.next_id:
                if "error" in m:
                    raise RuntimeError("%s: %s" % (method, m["error"]))
                return m.get("result", {})

    def close(self):
        try:
            self.call("Browser.close")
        except (RuntimeError, OSError):
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--until", default="true")
    ap.add_argument("outdir")
    ap.add_argument("pages", nargs="+", metavar="NAME=URL")
    a = ap.parse_args()
    pages = [p.split("=", 1) for p in a.pages]
    if any(len(p) != 2 for p in pages):
        ap.error("pages are NAME=URL")

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as user_dir:
        try:
            c = Chrome(user_dir)
            sessions = {}
            for name, url in pages:
                tid = c.call("Target.createTarget", {"url": "about:blank"})["targetId"]
                s = c.call("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
                c.call("Emulation.setDeviceMetricsOverride",
                       {"width": 1280, "height": 900, "deviceScaleFactor": 1, "mobile": False}, s)
                c.call("Page.navigate", {"url": url}, s)
                sessions[name] = s
            print("chromium up, %d page(s) loading after %.1f s"
                  % (len(pages), time.monotonic() - t0), flush=True)
        except (RuntimeError, OSError) as e:
            print("chromium: %s" % e, file=sys.stderr)
            return 2
        rc = 0
        waiting = dict(sessions)
        deadline = time.monotonic() + a.timeout
        while waiting and time.monotonic() < deadline:
            for name, s in list(waiting.items()):
                r = c.call("Runtime.evaluate", {"expression": "!!(%s)" % a.until,
                                                "returnByValue": True}, s)
                if r.get("result", {}).get("value") is True:
                    print("%s: ready after %.1f s" % (name, time.monotonic() - t0), flush=True)
                    del waiting[name]
            time.sleep(0.2)
        for name in waiting:
            print("%s: not ready within %g s" % (name, a.timeout), file=sys.stderr)
            rc = 1
        for name, s in sessions.items():
            dom = c.call("Runtime.evaluate", {"expression": "document.documentElement.outerHTML",
                                              "returnByValue": True}, s)["result"]["value"]
            with open(os.path.join(a.outdir, name + ".html"), "w") as f:
                f.write(dom)
            png = c.call("Page.captureScreenshot", {"format": "png"}, s)["data"]
            with open(os.path.join(a.outdir, name + ".png"), "wb") as f:
                f.write(base64.b64decode(png))
        c.close()
        print("chromium: %.1f s in all" % (time.monotonic() - t0), flush=True)
        return rc


if __name__ == "__main__":
    sys.exit(main())
