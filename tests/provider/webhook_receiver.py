#!/usr/bin/python3
"""A webhook receiver for tests: checks llmcap signatures and counts deliveries.

    webhook_receiver.py --port P --secret S [--fail-first N] [--log FILE]

POST any path: the body is checked against
    x-llmcap-signature: t=UNIX,v1=hex(HMAC-SHA256(secret, "t.body"))
(and t within 300 s of now). Answers 500 to the first N POSTs (--fail-first,
counted before the signature check), 401 to a bad signature, else 200.
Every POST is logged as a JSON line to --log.

GET /stats -> {"posts": N, "ok": N, "failed": N, "bad_signature": N,
               "deliveries": {delivery_id: times received with a good signature},
               "events": {event: unique deliveries}, "sources": {"llmcap-server"|"host": {event: unique}},
               "last": {event: body}}
POST /fail?n=N makes the next N POSTs fail (for tests that switch mid-run).
"""
import argparse
import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

LOCK = threading.Lock()
STATE = {"posts": 0, "ok": 0, "failed": 0, "bad_signature": 0, "deliveries": {}, "events": {}, "sources": {},
         "last": {}}
CFG = {"fail_left": 0, "secret": b"", "log": None}


def check_sig(header, body):
    if not header:
        return False
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        t = int(parts.get("t", ""))
    except ValueError:
        return False
    if abs(time.time() - t) > 300:
        return False
    want = hmac.new(CFG["secret"], str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts.get("v1", ""))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_GET(self):
        if urlparse(self.path).path == "/stats":
            with LOCK:
                self.reply(200, STATE)
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urlparse(self.path)
        if u.path == "/fail":
            with LOCK:
                CFG["fail_left"] = int(parse_qs(u.query).get("n", ["1"])[0])
            self.reply(200, {"fail_left": CFG["fail_left"]})
            return
        event = self.headers.get("x-llmcap-event", "")
        dlv = self.headers.get("x-llmcap-delivery", "")
        sig_ok = check_sig(self.headers.get("x-llmcap-signature"), body)
        with LOCK:
            STATE["posts"] += 1
            if CFG["fail_left"] > 0:
                CFG["fail_left"] -= 1
                STATE["failed"] += 1
                code = 500
            elif not sig_ok:
                STATE["bad_signature"] += 1
                code = 401
            else:
                code = 200
                STATE["ok"] += 1
                first = dlv not in STATE["deliveries"]
                STATE["deliveries"][dlv] = STATE["deliveries"].get(dlv, 0) + 1
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = {}
                if first:
                    STATE["events"][event] = STATE["events"].get(event, 0) + 1
                    src = STATE["sources"].setdefault(str(doc.get("source")), {})
                    src[event] = src.get(event, 0) + 1
                STATE["last"][event] = doc
            if CFG["log"]:
                with open(CFG["log"], "a") as f:
                    f.write(json.dumps({"status": code, "event": event, "delivery": dlv, "sig_ok": sig_ok,
                                        "body": body.decode("utf-8", "replace")}) + "\n")
        self.reply(code, {"status": code})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--secret", required=True)
    ap.add_argument("--fail-first", type=int, default=0)
    ap.add_argument("--log")
    a = ap.parse_args()
    CFG.update(fail_left=a.fail_first, secret=a.secret.encode(), log=a.log)
    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
