#!/usr/bin/env python3
"""A loopback SMTP receiver for tests: speaks enough SMTP (EHLO/HELO, MAIL, RCPT, DATA, RSET,
NOOP, QUIT) for libcurl, and appends every message as one JSON line {"from", "to", "data"} to --log.

    smtp_receiver.py --port N --log FILE
"""
import argparse
import asyncio
import json


async def session(reader, writer, log):
    def send(line):
        writer.write((line + "\r\n").encode())

    send("220 llmcap-test ESMTP")
    mail_from, rcpt = None, []
    while True:
        line = await reader.readline()
        if not line:
            break
        cmd = line.decode("utf-8", "replace").rstrip("\r\n")
        verb = cmd[:4].upper()
        if verb in ("EHLO", "HELO"):
            send("250-llmcap-test" if verb == "EHLO" else "250 llmcap-test")
            if verb == "EHLO":
                send("250 8BITMIME")
        elif verb == "MAIL":
            mail_from, rcpt = cmd.split(":", 1)[1].strip(), []
            send("250 OK")
        elif verb == "RCPT":
            rcpt.append(cmd.split(":", 1)[1].strip())
            send("250 OK")
        elif verb == "DATA":
            send("354 go ahead")
            await writer.drain()
            data = []
            while True:
                dl = await reader.readline()
                if not dl or dl in (b".\r\n", b".\n"):
                    break
                if dl.startswith(b".."):
                    dl = dl[1:]
                data.append(dl.decode("utf-8", "replace"))
            with open(log, "a") as f:
                f.write(json.dumps({"from": mail_from, "to": rcpt, "data": "".join(data)}) + "\n")
            send("250 OK queued")
        elif verb == "RSET":
            mail_from, rcpt = None, []
            send("250 OK")
        elif verb == "NOOP":
            send("250 OK")
        elif verb == "QUIT":
            send("221 bye")
            await writer.drain()
            break
        else:
            send("502 not implemented")
        await writer.drain()
    writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--log", required=True)
    a = ap.parse_args()
    srv = await asyncio.start_server(lambda r, w: session(r, w, a.log), "127.0.0.1", a.port)
    async with srv:
        await srv.serve_forever()


asyncio.run(main())
