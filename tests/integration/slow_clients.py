#!/usr/bin/env python3
"""Hostile clients for test_server_hardening.sh.

  slow_clients.py trickle HOST PORT N SRC SECONDS
      N connections from source address SRC, each sending a request head one byte every 0.3 s
      (never finishing it) for up to SECONDS. Prints one line: "opened O closed C max_open_s T",
      C = connections the server closed while they were still trickling, T = the longest one
      stayed open.
  slow_clients.py unauth_bodies HOST PORT N SIZE PATH
      N connections at once, each a PUT of SIZE bytes without a token. Prints the statuses.
  slow_clients.py head_only HOST PORT PATH
      A PUT head announcing 4 MB without a token, and no body: prints the status line the server
      sends (before any body) or "timeout".
"""
import socket, sys, threading, time


def trickle(host, port, n, src, seconds):
    socks, opened = [], 0
    for _ in range(n):
        s = socket.socket()
        s.bind((src, 0))
        s.settimeout(2)
        try:
            s.connect((host, port))
            socks.append([s, time.monotonic(), None])
            opened += 1
        except OSError:
            s.close()
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100000
    pos = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end and any(c[2] is None for c in socks):
        for c in socks:
            if c[2] is not None:
                continue
            try:
                c[0].send(head[pos:pos + 1])
                c[0].setblocking(False)
                try:
                    if c[0].recv(4096) == b"":
                        c[2] = time.monotonic()
                except BlockingIOError:
                    pass
                c[0].setblocking(True)
            except OSError:
                c[2] = time.monotonic()
        pos += 1
        time.sleep(0.3)
    now = time.monotonic()
    closed = sum(1 for c in socks if c[2] is not None)
    longest = max([(c[2] or now) - c[1] for c in socks] or [0])
    for c in socks:
        c[0].close()
    print("opened %d closed %d max_open_s %.1f" % (opened, closed, longest))


def unauth_bodies(host, port, n, size, path):
    out = []
    chunk = b"a" * 65536

    def one():
        try:
            s = socket.create_connection((host, port), timeout=20)
            s.sendall(b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % (path.encode(), size))
            sent = 0
            while sent < size:
                s.sendall(chunk[:min(len(chunk), size - sent)])
                sent += min(len(chunk), size - sent)
            out.append(s.recv(100).split(b"\r\n")[0].decode())
        except OSError as e:
            out.append("closed (%s)" % e.__class__.__name__)
    ts = [threading.Thread(target=one) for _ in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(" | ".join(sorted(set(out))))


def head_only(host, port, path):
    s = socket.create_connection((host, port), timeout=5)
    s.sendall(b"PUT %s HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n\r\n" % path.encode())
    try:
        print(s.recv(200).split(b"\r\n")[0].decode() or "closed")
    except socket.timeout:
        print("timeout")


if __name__ == "__main__":
    a = sys.argv
    if a[1] == "trickle":
        trickle(a[2], int(a[3]), int(a[4]), a[5], float(a[6]))
    elif a[1] == "unauth_bodies":
        unauth_bodies(a[2], int(a[3]), int(a[4]), int(a[5]), a[6])
    elif a[1] == "head_only":
        head_only(a[2], int(a[3]), a[4])
