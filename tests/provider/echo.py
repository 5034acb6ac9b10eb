#!/usr/bin/python3
"""echo.py --port P [--host H] --log FILE [--tls-cert C --tls-key K] [--banner TEXT]

A stand-in for a host that is not a provider: per connection, everything the client sends is read
until its end (EOF, or close_notify over TLS), then sent back unchanged and the connection closed.
--banner: the server speaks first (TEXT, then close), as SMTP or SSH servers do. One JSON line per
connection in the log: {"len": bytes received, "sha256": of them}.
"""
import argparse
import hashlib
import json
import socket
import ssl
import threading


def serve_forever(host, port, handle):
    """accept on host:port, each connection to handle(sock) in a thread of its own (proxy.py too)"""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((host, port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c,), daemon=True).start()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--log", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--banner")
    a = ap.parse_args()
    ctx = None
    if a.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
    lock = threading.Lock()

    def handle(c):
        try:
            c.settimeout(30)
            if ctx:
                c = ctx.wrap_socket(c, server_side=True)
            if a.banner:
                c.sendall(a.banner.encode())
                got = b""
            else:
                got = b""
                while True:
                    try:
                        b = c.recv(65536)
                    except ssl.SSLZeroReturnError:
                        b = b""
                    if not b:
                        break
                    got += b
                c.sendall(got)
            with lock, open(a.log, "a") as f:
                f.write(json.dumps({"len": len(got), "sha256": hashlib.sha256(got).hexdigest()}) + "\n")
        except (OSError, ssl.SSLError) as e:
            with lock, open(a.log, "a") as f:
                f.write(json.dumps({"error": str(e)}) + "\n")
        finally:
            c.close()

    serve_forever(a.host, a.port, handle)


if __name__ == "__main__":
    main()
