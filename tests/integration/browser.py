#!/usr/bin/python3
"""Drives Debian's headless Chromium over the DevTools protocol for the
integration tests (tests/integration/browser_test.cc).

    browser.py OUT_DIR < steps.json > results.json

Each step is {"url", "eval" (optional: a JavaScript expression, awaited, whose
value must be JSON-serialisable), "screenshot" (optional file name in
OUT_DIR), "width"/"height"/"mobile" (optional viewport)}. Each result is
{"url", "load_ms" (navigation start to the end of the load event, from the
page's own Navigation Timing), "dom_ms", "title", "value"}.

Chromium listens on a port of its own choosing on 127.0.0.1 (read from
DevToolsActivePort in a fresh profile), talks to nobody else (no first-run,
sync, extensions or background networking), and is closed, then killed by
its PID if it lingers. DevTools' Runtime.evaluate runs in the page like a
console does: a page's CSP does not stop it, which is what lets a test read
what the page's own scripts could not change.
"""
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

import websocket  # python3-websocket (websocket-client)

DEADLINE_S = 30


class DevTools:
    def __init__(self, ws_url):
        self.ws = websocket.create_connection(ws_url, timeout=DEADLINE_S, suppress_origin=True)
        self.next_id = 0
        self.events = []

    def call(self, method, **params):
        self.next_id += 1
        mid = self.next_id
        self.ws.send(json.dumps({"id": mid, "method": method, "params": params}))
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == mid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(method)

    def wait_event(self, name):
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            for i, e in enumerate(self.events):
                if e["method"] == name:
                    del self.events[: i + 1]
                    return e
            msg = json.loads(self.ws.recv())
            if "method" in msg:
                self.events.append(msg)
        raise TimeoutError(name)

    def evaluate(self, expression):
        r = self.call("Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"evaluate {expression!r}: {r['exceptionDetails']}")
        return r["result"].get("value")


LOAD_TIMING = """new Promise(resolve => {
  const poll = () => {
    const e = performance.getEntriesByType('navigation')[0];
    if (e && e.loadEventEnd > 0) resolve([e.loadEventEnd - e.startTime, e.domContentLoadedEventEnd - e.startTime]);
    else setTimeout(poll, 5);
  };
  poll();
})"""


def start_chromium(profile):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("browser.py: chromium is not installed (scripts/install-deps.sh test)")
    argv = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking", "--disable-sync",
            "--disable-default-apps", "--disable-component-update", "--no-default-browser-check",
            "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
            f"--user-data-dir={profile}", "--window-size=1280,900", "about:blank"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(profile, "chromium.log"), "wb"))
    port_file = os.path.join(profile, "DevToolsActivePort")
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            sys.exit(f"browser.py: chromium exited with {proc.returncode}")
        try:
            with open(port_file) as f:
                port = int(f.readline().strip())
            break
        except (FileNotFoundError, ValueError):
            time.sleep(0.05)  # Chromium writes the file once it listens; nothing to wait on
    else:
        proc.kill()
        sys.exit("browser.py: chromium did not open its DevTools port")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=DEADLINE_S) as r:
        targets = json.load(r)
    page = next(t for t in targets if t["type"] == "page")
    return proc, page["webSocketDebuggerUrl"]


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    steps = json.load(sys.stdin)
    profile = tempfile.mkdtemp(prefix="artifact-chromium-")
    proc = None
    try:
        proc, ws_url = start_chromium(profile)
        dt = DevTools(ws_url)
        dt.call("Page.enable")
        results = []
        for step in steps:
            dt.call("Emulation.setDeviceMetricsOverride", width=step.get("width", 1280),
                    height=step.get("height", 900), deviceScaleFactor=1, mobile=step.get("mobile", False))
            dt.events.clear()
            nav = dt.call("Page.navigate", url=step["url"])
            if nav.get("errorText"):
                raise RuntimeError(f"navigate {step['url']}: {nav['errorText']}")
            dt.wait_event("Page.loadEventFired")
            load_ms, dom_ms = dt.evaluate(LOAD_TIMING)
            result = {"url": step["url"], "load_ms": load_ms, "dom_ms": dom_ms,
                      "title": dt.evaluate("document.title")}
            if step.get("eval"):
                result["value"] = dt.evaluate(step["eval"])
            if step.get("screenshot"):
                shot = dt.call("Page.captureScreenshot", format="png")
                with open(os.path.join(out_dir, step["screenshot"]), "wb") as f:
                    f.write(base64.b64decode(shot["data"]))
            results.append(result)
        json.dump(results, sys.stdout)
        try:
            dt.call("Browser.close")
        except Exception:  # closing may drop the connection before it answers
            pass
    finally:
        if proc is not None:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)


if __name__ == "__main__":
    main()
