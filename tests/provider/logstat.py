#!/usr/bin/python3
"""logstat.py LOG [--path P]: sums a provider.py log, prints one JSON object.

{"requests": N,          request events (every complete request received)
 "h2": N,                connections that tried HTTP/2 (ALPN h2 or the h2 preface)
 "bytes_total": N,       application bytes received, over closed connections
 "input": N, "cached": N, "output": N,   usage sums over request events
 "by_path": {"/v1/chat/completions": N, ...},   request counts (query string dropped)
 "by_status": {"200": N, ...},
 "conns": N,             connections accepted
 "conns_closed": N,      connections with a bytes event (closed)
 "zero_byte_conns": N}   closed connections that delivered no byte

--path P counts only requests to path P (input/cached/output/requests/by_status).
A missing log file counts as empty. A torn last line (written concurrently) is skipped.
"""
import json
import sys


def stat(path, only_path=None):
    out = {"requests": 0, "h2": 0, "bytes_total": 0, "input": 0, "cached": 0, "output": 0,
           "by_path": {}, "by_status": {}, "conns": 0, "conns_closed": 0,
           "zero_byte_conns": 0}
    h2_conns = set()
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return out
    with f:
        for raw in f:
            try:
                ev = json.loads(raw)
            except ValueError:
                continue
            kind = ev.get("event")
            if kind == "request":
                p = str(ev.get("path", "")).split("?", 1)[0]
                if only_path is not None and p != only_path:
                    continue
                out["requests"] += 1
                out["by_path"][p] = out["by_path"].get(p, 0) + 1
                st = str(ev.get("status"))
                out["by_status"][st] = out["by_status"].get(st, 0) + 1
                u = ev.get("usage") or {}
                for k in ("input", "cached", "output"):
                    out[k] += int(u.get(k) or 0)
            elif kind in ("h2_preface", "alpn_h2"):
                h2_conns.add(ev.get("conn", id(ev)))
            elif kind == "bytes":
                n = int(ev.get("n") or 0)
                out["bytes_total"] += n
                out["conns_closed"] += 1
                if n == 0:
                    out["zero_byte_conns"] += 1
            elif kind == "conn":
                out["conns"] += 1
    out["h2"] = len(h2_conns)
    return out


def main(argv):
    args = argv[1:]
    only = None
    if "--path" in args:
        i = args.index("--path")
        if i + 1 >= len(args):
            sys.exit("usage: logstat.py LOG [--path P]")
        only = args[i + 1]
        del args[i:i + 2]
    if len(args) != 1:
        sys.exit("usage: logstat.py LOG [--path P]")
    print(json.dumps(stat(args[0], only), sort_keys=True))


if __name__ == "__main__":
    main(sys.argv)
