#!/usr/bin/env python3
"""A small Chrome DevTools Protocol client for tests: starts headless Chromium (Debian's
/usr/bin/chromium) with a fresh profile, opens one page and drives it. Needs python3-websocket.

    with Browser(outdir) as b:
        b.goto("http://127.0.0.1:8787/")
        b.wait("document.querySelector('#token') !== null")
        b.eval("1 + 1")                      # -> 2 (promises are awaited)
        b.screenshot("page.png")
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

import websocket

CHROMIUM = os.environ.get("LLMCAP_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
         "--remote-debugging-port=0", "--remote-allow-origins=*"]


class CDPError(Exception):
    pass


class Browser:
    def __init__(self, outdir, width=1280, height=800, log=None):
        self.outdir = outdir
        self.size = (width, height)
        self.profile = tempfile.mkdtemp(prefix="llmcap-chromium.")
        self.log = open(log or os.path.join(outdir, "chromium.log"), "ab")
        self.proc = subprocess.Popen([CHROMIUM] + FLAGS + [f"--user-data-dir={self.profile}",
                                     f"--window-size={width},{height}", "about:blank"],
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL)
        port = self._devtools_port()
        targets = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=30))
        page = next(t for t in targets if t.get("type") == "page")
        self.ws = websocket.create_connection(page["webSocketDebuggerUrl"], timeout=60,
                                              suppress_origin=True)
        self.next_id = 0
        self.events = []
        self.send("Page.enable")
        self.send("Runtime.enable")
        self.viewport(width, height)

    def _devtools_port(self):
        path = os.path.join(self.profile, "DevToolsActivePort")
        for _ in range(600):
            if self.proc.poll() is not None:
                raise CDPError(f"chromium exited with {self.proc.returncode} (see chromium.log)")
            try:
                with open(path) as f:
                    return int(f.readline())
            except (OSError, ValueError):
                time.sleep(0.1)
        raise CDPError("chromium never opened its DevTools port")

    def send(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise CDPError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def viewport(self, width, height, mobile=False):
        self.send("Emulation.setDeviceMetricsOverride", width=width, height=height,
                  deviceScaleFactor=1, mobile=mobile)

    def goto(self, url):
        self.send("Page.navigate", url=url)
        self.wait("document.readyState === 'complete'")

    def eval(self, expr):
        r = self.send("Runtime.evaluate", expression=expr, awaitPromise=True, returnByValue=True,
                      userGesture=True)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise CDPError(f"{expr[:80]}: {d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    def wait(self, expr, timeout=30):
        end = time.time() + timeout
        last = None
        while time.time() < end:
            try:
                last = self.eval(f"!!({expr})")
                if last:
                    return True
            except CDPError as e:
                last = e
            time.sleep(0.1)
        raise CDPError(f"timed out waiting for {expr} (last: {last})")

    def screenshot(self, name):
        r = self.send("Page.captureScreenshot", format="png", captureBeyondViewport=False)
        path = os.path.join(self.outdir, name)
        with open(path, "wb") as f:
            f.write(base64.b64decode(r["data"]))
        return path

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
