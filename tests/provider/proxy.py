#!/usr/bin/python3
"""proxy.py --port P [--host H] --log FILE: a small HTTP proxy, as a program's HTTPS_PROXY.

CONNECT host:port -> "200 Connection established" and a tunnel to host:port. A request in
absolute form ("POST http://host:port/path HTTP/1.1") -> sent to host:port in origin form with
"connection: close"; the client's connection ends with the answer (one request per connection). One JSON line per connection in the log: {"method", "target", "up_bytes": bytes the
client sent through the proxy after its first head}.
"""
import argparse
import json
import socket
import threading

from echo import serve_forever


def pipe(src, dst, count):
    try:
        while True:
            b = src.recv(65536)
            if not b:
                break
            count[0] += len(b)
            dst.sendall(b)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    lock = threading.Lock()

    def handle(c):
        up = None
        rec = {}
        count = [0]
        try:
            head = b""
            while b"\r\n\r\n" not in head:
                b = c.recv(65536)
                if not b:
                    return
                head += b
            head, rest = head.split(b"\r\n\r\n", 1)
            lines = head.split(b"\r\n")
            method, target, ver = lines[0].decode().split(" ")
            rec = {"method": method, "target": target}
            if method == "CONNECT":
                host, port = target.rsplit(":", 1)
                up = socket.create_connection((host, int(port)), timeout=30)
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                first = rest
            else:
                hp = target.split("://", 1)[1].split("/", 1)
                path = "/" + (hp[1] if len(hp) > 1 else "")
                host, _, port = hp[0].partition(":")
                up = socket.create_connection((host, int(port or 80)), timeout=30)
                # one request per upstream connection: "connection: close" to the host, and the
                # client's connection ends with its answer
                hdrs = [l for l in lines[1:] if l.split(b":")[0].strip().lower() not in
                        (b"connection", b"proxy-connection", b"keep-alive")] + [b"connection: close"]
                first = ("%s %s %s\r\n" % (method, path, ver)).encode() + b"\r\n".join(hdrs) + b"\r\n\r\n" + rest
            count[0] += len(rest)
            up.sendall(first)
            t = threading.Thread(target=pipe, args=(c, up, count), daemon=True)
            t.start()
            pipe(up, c, [0])
            t.join(30)
        except (OSError, ValueError, IndexError) as e:
            rec["error"] = str(e)
        finally:
            rec["up_bytes"] = count[0]
            with lock, open(a.log, "a") as f:
                f.write(json.dumps(rec) + "\n")
            c.close()
            if up:
                up.close()

    serve_forever(a.host, a.port, handle)


if __name__ == "__main__":
    main()
