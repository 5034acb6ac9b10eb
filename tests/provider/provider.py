#!/usr/bin/python3
"""Stand-in LLM provider for llmcap's tests (stdlib only, Debian's /usr/bin/python3).

    provider.py --port P --log FILE [--host 127.0.0.1]
                [--tls-cert F --tls-key K] [--tls-version 1.2|1.3] [--alpn h2,http/1.1]
                [--gzip] [--chunked] [--usage-in N] [--usage-cached N] [--usage-out N]
                [--status CODE] [--delay-ms N] [--stream-delay-ms N] [--idle-timeout S]
                [--incomplete] [--replay DIR]

A hand-written HTTP/1.1 server (keep-alive, one thread per connection) so that it can
count every application byte a connection delivers and spot an HTTP/2 preface.

Endpoints (OpenAI and Anthropic shapes):
    POST /v1/chat/completions   stream -> SSE chunks; a usage chunk only with
                                stream_options.include_usage; then "data: [DONE]"
    POST /v1/responses          stream -> response.created ... response.completed (usage;
                                response.incomplete when capped, with --incomplete)
    POST /v1/embeddings
    POST /v1/messages           Anthropic; stream -> message_start (input usage) ...
                                message_delta (cumulative output_tokens), message_stop
    GET  /v1/models
Usage: input = --usage-in, cached = --usage-cached, output = min(--usage-out, the
request's output cap: max_completion_tokens / max_tokens / max_output_tokens).
--replay DIR: a POST with the header "x-golden-case: NAME" is answered with the documented
response of DIR/NAME.json (a golden price case, tests/golden/prices): its JSON body, its NDJSON or its SSE
stream, byte for byte, whatever the request says.

Log (--log): one JSON object per line, appended and flushed at once:
    {"event":"conn","conn":ID,"peer":"ip:port"}                 connection accepted
    {"event":"tls","conn":ID,"version":..,"alpn":..,"sni":..}   TLS handshake done
    {"event":"tls_error","conn":ID,"error":..}                  TLS handshake failed
    {"event":"request","conn":ID,"method","path","headers":{lower-cased},"body_len",
     "body" (first 4096 bytes as text),"model","stream","usage":{"input","cached","output"},
     "usage_reported" (whether the response carried the usage),"status"}
                                                                 each complete request,
                                                                 written before the answer
    {"event":"alpn_h2","conn":ID}                               ALPN selected h2
    {"event":"h2_preface","conn":ID}                            connection began with the
                                                                 HTTP/2 preface (then closed)
    {"event":"bytes","conn":ID,"n":N}                           at close: application bytes
                                                                 received on the connection
"""

import argparse
import json
import os
import random
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import zlib

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_HEADER_BYTES = 64 * 1024
MAX_HEADERS = 200
MAX_BODY = 64 * 1024 * 1024
LOG_BODY = 4096

REASONS = {
    100: "Continue", 200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    409: "Conflict", 413: "Payload Too Large", 422: "Unprocessable Entity",
    429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Gateway Timeout", 529: "Overloaded",
}

WORDS = ["Hello", " from", " the", " llmcap", " stand-in", " provider", ".", " This", " text",
         " is", " generated", " one", " token", " at", " a", " time", "!"]

MODELS = ["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini", "text-embedding-3-small",
          "claude-3-5-haiku-latest", "claude-sonnet-4-20250514"]


class Log:
    """Line-atomic JSON log: one os.write per line on an O_APPEND descriptor."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644) \
            if path else None
        self.lock = threading.Lock()

    def __call__(self, **ev):
        ev.setdefault("t", round(time.time(), 6))
        line = (json.dumps(ev, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        if self.fd is None:
            return
        with self.lock:
            view = memoryview(line)
            while view:
                n = os.write(self.fd, view)
                view = view[n:]


class Closed(Exception):
    pass


class BadRequest(Exception):
    def __init__(self, status, msg):
        super().__init__(msg)
        self.status = status


class Reader:
    """Buffered reads on a socket, counting every byte received."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.nbytes = 0
        self.eof = False

    def fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            self.eof = True
            return False
        except (OSError, ssl.SSLError):
            self.eof = True
            return False
        if not data:
            self.eof = True
            return False
        self.nbytes += len(data)
        self.buf += data
        return True

    def readline(self, limit):
        start = 0
        while True:
            i = self.buf.find(b"\n", start)
            if i >= 0:
                line = bytes(self.buf[:i + 1])
                del self.buf[:i + 1]
                return line
            start = len(self.buf)
            if len(self.buf) > limit:
                raise BadRequest(431, "header line too long")
            if not self.fill():
                if self.buf:
                    raise Closed()
                raise Closed()

    def read(self, n):
        while len(self.buf) < n:
            if not self.fill():
                raise Closed()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data


def now():
    return int(time.time())


def rid(prefix):
    return prefix + "%016x" % random.getrandbits(64)


def accepts_gzip(value):
    if not value:
        return False
    allowed = None
    star = None
    for part in value.split(","):
        bits = [b.strip() for b in part.split(";")]
        name = bits[0].lower()
        q = 1.0
        for b in bits[1:]:
            if b.lower().startswith("q="):
                try:
                    q = float(b[2:])
                except ValueError:
                    q = 0.0
        if name in ("gzip", "x-gzip"):
            allowed = q > 0
        elif name == "*":
            star = q > 0
    if allowed is not None:
        return allowed
    return bool(star)


def text_pieces(n):
    """n output tokens of text, as a list of pieces (one per token)."""
    return [WORDS[i % len(WORDS)] for i in range(n)]


def group(pieces, max_groups=24):
    """At most max_groups deltas, each at least one piece."""
    if not pieces:
        return []
    size = max(1, -(-len(pieces) // max_groups))
    return ["".join(pieces[i:i + size]) for i in range(0, len(pieces), size)]


def sse(data, event=None):
    s = ""
    if event:
        s += "event: " + event + "\n"
    if not isinstance(data, str):
        data = json.dumps(data, separators=(",", ":"))
    s += "data: " + data + "\n\n"
    return s.encode()


def int_or_none(v):
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return v


class Provider:
    def __init__(self, args, log):
        self.a = args
        self.log = log
        self.conn_ids = 0
        self.ids_lock = threading.Lock()
        self.ctx = None
        self.tls_local = threading.local()
        if args.tls_cert:
            self.ctx = self.make_ctx()

    def make_ctx(self):
        a = self.a
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        if a.tls_version:
            v = {"1.2": ssl.TLSVersion.TLSv1_2, "1.3": ssl.TLSVersion.TLSv1_3}[a.tls_version]
            ctx.minimum_version = v
            ctx.maximum_version = v
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        alpn = [p.strip() for p in (a.alpn or "http/1.1").split(",") if p.strip()]
        if alpn:
            ctx.set_alpn_protocols(alpn)

        def on_sni(sslobj, name, _ctx):
            self.tls_local.sni = name
            return None
        ctx.sni_callback = on_sni
        return ctx

    def next_id(self):
        with self.ids_lock:
            self.conn_ids += 1
            return self.conn_ids

    # ---- connection -------------------------------------------------------------------

    def handle_conn(self, sock, peer):
        cid = self.next_id()
        self.log(event="conn", conn=cid, peer="%s:%s" % (peer[0], peer[1]))
        reader = None
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(self.a.idle_timeout)
            if self.ctx:
                self.tls_local.sni = None
                try:
                    sock = self.ctx.wrap_socket(sock, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    self.log(event="tls_error", conn=cid, error=str(e))
                    return
                alpn = sock.selected_alpn_protocol()
                self.log(event="tls", conn=cid, version=sock.version(), alpn=alpn,
                         sni=self.tls_local.sni, cipher=(sock.cipher() or [None])[0])
                reader = Reader(sock)
                if alpn == "h2":
                    self.log(event="alpn_h2", conn=cid)
                    self.expect_preface(reader, cid)
                    return
            reader = reader or Reader(sock)
            if self.starts_with_preface(reader):
                self.log(event="h2_preface", conn=cid)
                return
            while self.one_request(sock, reader, cid):
                pass
        except Closed:
            pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            self.log(event="bytes", conn=cid, n=reader.nbytes if reader else 0)
            try:
                if isinstance(sock, ssl.SSLSocket):
                    sock.setblocking(False)  # send close_notify, do not wait for the peer's
                    try:
                        sock.unwrap()
                    except (OSError, ssl.SSLError, ValueError):
                        pass
                sock.close()
            except OSError:
                pass

    def expect_preface(self, reader, cid):
        while len(reader.buf) < len(H2_PREFACE) and reader.fill():
            pass
        if bytes(reader.buf[:len(H2_PREFACE)]) == H2_PREFACE:
            self.log(event="h2_preface", conn=cid)

    @staticmethod
    def starts_with_preface(reader):
        while True:
            n = min(len(reader.buf), len(H2_PREFACE))
            if bytes(reader.buf[:n]) != H2_PREFACE[:n]:
                return False
            if n == len(H2_PREFACE):
                return True
            if not reader.fill():
                return False

    def one_request(self, sock, reader, cid):
        """Read one request and answer it. False when the connection should close."""
        # request line (skip stray blank lines between requests)
        line = b"\r\n"
        while line in (b"\r\n", b"\n"):
            line = reader.readline(MAX_HEADER_BYTES)
        try:
            method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ")
        except ValueError:
            self.send_simple(sock, 400, "malformed request line", close=True)
            return False
        headers = {}
        total = len(line)
        while True:
            h = reader.readline(MAX_HEADER_BYTES)
            total += len(h)
            if total > MAX_HEADER_BYTES or len(headers) > MAX_HEADERS:
                self.send_simple(sock, 431, "headers too large", close=True)
                return False
            if h in (b"\r\n", b"\n"):
                break
            k, sep, v = h.decode("latin-1").partition(":")
            if not sep:
                self.send_simple(sock, 400, "malformed header", close=True)
                return False
            k = k.strip().lower()
            v = v.strip()
            headers[k] = headers[k] + ", " + v if k in headers else v

        keep = version == "HTTP/1.1"
        conn_hdr = headers.get("connection", "").lower()
        if "close" in conn_hdr:
            keep = False
        elif "keep-alive" in conn_hdr:
            keep = True

        if headers.get("expect", "").lower() == "100-continue":
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")

        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            body = self.read_chunked(reader)
        else:
            try:
                clen = int(headers.get("content-length", "0") or "0")
            except ValueError:
                self.send_simple(sock, 400, "bad content-length", close=True)
                return False
            if clen < 0 or clen > MAX_BODY:
                self.send_simple(sock, 413, "body too large", close=True)
                return False
            body = reader.read(clen) if clen else b""

        path = target.split("?", 1)[0]
        status, resp_headers, pieces, model, usage, reported, stream = \
            self.route(method, path, headers, body)

        self.log(event="request", conn=cid, method=method, path=target, headers=headers,
                 body_len=len(body), body=body[:LOG_BODY].decode("utf-8", "replace"),
                 model=model, stream=stream, usage=usage, usage_reported=reported,
                 status=status)

        if self.a.delay_ms:
            time.sleep(self.a.delay_ms / 1000.0)
        self.send(sock, status, resp_headers, pieces, headers, keep, method == "HEAD",
                  stream)
        return keep

    @staticmethod
    def read_chunked(reader):
        body = bytearray()
        while True:
            line = reader.readline(MAX_HEADER_BYTES)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise Closed()
            if size == 0:
                while reader.readline(MAX_HEADER_BYTES) not in (b"\r\n", b"\n"):
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise Closed()
            body += reader.read(size)
            reader.readline(16)  # CRLF after the chunk

    # ---- writing ----------------------------------------------------------------------

    def send_simple(self, sock, status, msg, close=False):
        body = json.dumps({"error": {"message": msg, "type": "invalid_request_error",
                                     "param": None, "code": None}}).encode()
        head = "HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n" \
               "connection: %s\r\n\r\n" % (status, REASONS.get(status, "Error"), len(body),
                                           "close" if close else "keep-alive")
        try:
            sock.sendall(head.encode() + body)
        except OSError:
            pass

    def send(self, sock, status, hdrs, pieces, req_headers, keep, head_only, stream):
        a = self.a
        use_gzip = a.gzip and accepts_gzip(req_headers.get("accept-encoding"))
        if use_gzip:
            comp = zlib.compressobj(6, zlib.DEFLATED, 31)
            out = []
            for p in pieces:
                c = comp.compress(p) + comp.flush(zlib.Z_SYNC_FLUSH)
                if c:
                    out.append(c)
            out.append(comp.flush(zlib.Z_FINISH))
            pieces = out
            hdrs.append(("content-encoding", "gzip"))
            hdrs.append(("vary", "accept-encoding"))
        lines = ["HTTP/1.1 %d %s" % (status, REASONS.get(status, "Status"))]
        lines.append("date: " + time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime()))
        lines += ["%s: %s" % kv for kv in hdrs]
        if a.chunked:
            lines.append("transfer-encoding: chunked")
        else:
            lines.append("content-length: %d" % sum(len(p) for p in pieces))
        lines.append("connection: " + ("keep-alive" if keep else "close"))
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head_only:
            sock.sendall(head)
            return
        if not a.chunked:
            if stream and a.stream_delay_ms:
                sock.sendall(head)
                for p in pieces:
                    time.sleep(a.stream_delay_ms / 1000.0)
                    sock.sendall(p)
            else:
                sock.sendall(head + b"".join(pieces))
            return
        # chunked: each piece is split at irregular points into several chunks
        sock.sendall(head)
        sizes = [5, 64, 1, 300, 17, 4096]
        k = 0
        for p in pieces:
            if stream and a.stream_delay_ms:
                time.sleep(a.stream_delay_ms / 1000.0)
            view = memoryview(p)
            while view:
                n = sizes[k % len(sizes)]
                k += 1
                part = bytes(view[:n])
                view = view[n:]
                sock.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
        sock.sendall(b"0\r\n\r\n")

    # ---- routing ----------------------------------------------------------------------

    def route(self, method, path, headers, body):
        """-> status, headers list, body pieces, model, usage, usage_reported, stream"""
        zero = {"input": 0, "cached": 0, "output": 0}
        anthropic = path.startswith("/v1/messages")
        req = {}
        if method == "POST" and body:
            try:
                req = json.loads(body)
            except ValueError:
                req = None
        model = req.get("model") if isinstance(req, dict) else None
        stream = bool(req.get("stream")) if isinstance(req, dict) else False

        if self.a.status:
            st, h, b = self.error(self.a.status, anthropic, "stand-in provider: forced status %d"
                                  % self.a.status)
            return st, h, [b], model, zero, False, False
        if self.a.replay and method == "POST" and headers.get("x-golden-case"):
            return self.replay(headers["x-golden-case"], model, anthropic)

        routes = {
            ("POST", "/v1/chat/completions"): self.chat,
            ("POST", "/v1/responses"): self.responses,
            ("POST", "/v1/embeddings"): self.embeddings,
            ("POST", "/v1/messages"): self.messages,
            ("GET", "/v1/models"): self.models,
        }
        fn = routes.get((method, path))
        if fn is None:
            if any(p == path for (_, p) in routes):
                st, h, b = self.error(405, anthropic, "method %s not allowed on %s" % (method, path))
            else:
                st, h, b = self.error(404, anthropic, "unknown path %s" % path)
            return st, h, [b], model, zero, False, False
        if method == "POST" and not isinstance(req, dict):
            st, h, b = self.error(400, anthropic, "request body is not a JSON object")
            return st, h, [b], None, zero, False, False
        if path != "/v1/models" and not isinstance(model, str):
            st, h, b = self.error(400, anthropic, "you must provide a model parameter")
            return st, h, [b], None, zero, False, False
        return fn(req, headers, model, stream)

    def replay(self, name, model, anthropic):
        """A golden case's documented response."""
        zero = {"input": 0, "cached": 0, "output": 0}
        if not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            st, h, b = self.error(400, anthropic, "bad x-golden-case")
            return st, h, [b], model, zero, False, False
        try:
            with open(os.path.join(self.a.replay, name + ".json"), encoding="utf-8") as f:
                case = json.load(f)
        except (OSError, ValueError):
            st, h, b = self.error(404, anthropic, "no golden case %s" % name)
            return st, h, [b], model, zero, False, False
        r = case["response"]
        if "sse" in r:
            body = r["sse"].encode()
            return 200, [("content-type", "text/event-stream; charset=utf-8")], [body], model, zero, True, True
        if "ndjson" in r:   # Ollama's native stream: one JSON object a line
            body = r["ndjson"].encode()
            return 200, [("content-type", "application/x-ndjson")], [body], model, zero, True, True
        body = json.dumps(r["body"]).encode()
        return 200, [("content-type", "application/json")], [body], model, zero, True, False

    def usage_for(self, cap):
        a = self.a
        out = a.usage_out
        if cap is not None and cap >= 0:
            out = min(out, cap)
        return {"input": a.usage_in, "cached": a.usage_cached, "output": out}

    def error(self, status, anthropic, msg):
        openai_types = {400: ("invalid_request_error", None), 401: ("invalid_request_error",
                        "invalid_api_key"), 403: ("permission_error", None),
                        404: ("invalid_request_error", "model_not_found"),
                        429: ("rate_limit_error", "rate_limit_exceeded"),
                        500: ("server_error", None), 503: ("server_error", None)}
        anth_types = {400: "invalid_request_error", 401: "authentication_error",
                      403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                      429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}
        hdrs = [("content-type", "application/json")]
        if status == 429:
            hdrs.append(("retry-after", "1"))
        if anthropic:
            hdrs.append(("request-id", rid("req_")))
            body = {"type": "error", "error": {"type": anth_types.get(status, "api_error"),
                                               "message": msg}}
        else:
            hdrs.append(("x-request-id", rid("req_")))
            t, code = openai_types.get(status, ("server_error" if status >= 500
                                                else "invalid_request_error", None))
            body = {"error": {"message": msg, "type": t, "param": None, "code": code}}
        return status, hdrs, json.dumps(body).encode()

    def json_resp(self, obj, anthropic=False):
        hdrs = [("content-type", "application/json")]
        hdrs.append(("request-id" if anthropic else "x-request-id", rid("req_")))
        if not anthropic:
            hdrs.append(("openai-processing-ms", "1"))
        return hdrs, [json.dumps(obj).encode()]

    def sse_resp(self, events, anthropic=False):
        hdrs = [("content-type", "text/event-stream; charset=utf-8"),
                ("cache-control", "no-cache")]
        hdrs.append(("request-id" if anthropic else "x-request-id", rid("req_")))
        return hdrs, events

    # OpenAI chat completions
    def chat(self, req, headers, model, stream):
        cap = int_or_none(req.get("max_completion_tokens"))
        if cap is None:
            cap = int_or_none(req.get("max_tokens"))
        u = self.usage_for(cap)
        usage = {"prompt_tokens": u["input"], "completion_tokens": u["output"],
                 "total_tokens": u["input"] + u["output"],
                 "prompt_tokens_details": {"cached_tokens": u["cached"], "audio_tokens": 0},
                 "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                               "accepted_prediction_tokens": 0,
                                               "rejected_prediction_tokens": 0}}
        cid, created = rid("chatcmpl-"), now()
        finish = "length" if cap is not None and u["output"] >= cap and cap < self.a.usage_out \
            else "stop"
        pieces = text_pieces(u["output"])
        if not stream:
            obj = {"id": cid, "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant",
                                                        "content": "".join(pieces),
                                                        "refusal": None, "annotations": []},
                                "logprobs": None, "finish_reason": finish}],
                   "usage": usage, "service_tier": "default",
                   "system_fingerprint": "fp_llmcap"}
            h, b = self.json_resp(obj)
            return 200, h, b, model, u, True, False
        so = req.get("stream_options")
        include = isinstance(so, dict) and so.get("include_usage") is True

        def chunk(delta, fin=None):
            c = {"id": cid, "object": "chat.completion.chunk", "created": created,
                 "model": model, "service_tier": "default", "system_fingerprint": "fp_llmcap",
                 "choices": [{"index": 0, "delta": delta, "logprobs": None,
                              "finish_reason": fin}]}
            if include:
                c["usage"] = None
            return sse(c)
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        events += [chunk({"content": g}) for g in group(pieces)]
        events.append(chunk({}, finish))
        if include:
            events.append(sse({"id": cid, "object": "chat.completion.chunk", "created": created,
                               "model": model, "service_tier": "default",
                               "system_fingerprint": "fp_llmcap", "choices": [],
                               "usage": usage}))
        events.append(sse("[DONE]"))
        h, b = self.sse_resp(events)
        return 200, h, b, model, u, include, True

    # OpenAI responses
    def responses(self, req, headers, model, stream):
        cap = int_or_none(req.get("max_output_tokens"))
        u = self.usage_for(cap)
        usage = {"input_tokens": u["input"], "input_tokens_details": {"cached_tokens": u["cached"]},
                 "output_tokens": u["output"], "output_tokens_details": {"reasoning_tokens": 0},
                 "total_tokens": u["input"] + u["output"]}
        resp_id, msg_id, created = rid("resp_"), rid("msg_"), now()
        pieces = text_pieces(u["output"])
        text = "".join(pieces)
        part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
        item = {"id": msg_id, "type": "message", "status": "completed", "role": "assistant",
                "content": [part]}
        # OpenAI ends a capped response with response.incomplete; only with --incomplete here
        incomplete = self.a.incomplete and cap is not None and u["output"] >= cap \
            and cap < self.a.usage_out

        def resp(status, output, use):
            return {"id": resp_id, "object": "response", "created_at": created,
                    "status": status, "error": None,
                    "incomplete_details": {"reason": "max_output_tokens"}
                    if incomplete and status != "in_progress" else None,
                    "instructions": req.get("instructions"),
                    "max_output_tokens": cap, "model": model, "output": output,
                    "parallel_tool_calls": True, "previous_response_id": None,
                    "store": True, "temperature": 1.0, "text": {"format": {"type": "text"}},
                    "tool_choice": "auto", "tools": [], "top_p": 1.0, "truncation": "disabled",
                    "usage": use, "user": req.get("user"), "metadata": {}}
        final_status = "incomplete" if incomplete else "completed"
        if not stream:
            h, b = self.json_resp(resp(final_status, [item], usage))
            return 200, h, b, model, u, True, False
        seq = [0]

        def ev(typ, **fields):
            d = {"type": typ, "sequence_number": seq[0]}
            d.update(fields)
            seq[0] += 1
            return sse(d, typ)
        events = [ev("response.created", response=resp("in_progress", [], None)),
                  ev("response.in_progress", response=resp("in_progress", [], None)),
                  ev("response.output_item.added", output_index=0,
                     item={"id": msg_id, "type": "message", "status": "in_progress",
                           "role": "assistant", "content": []}),
                  ev("response.content_part.added", item_id=msg_id, output_index=0,
                     content_index=0, part={"type": "output_text", "text": "",
                                            "annotations": [], "logprobs": []})]
        for g in group(pieces):
            events.append(ev("response.output_text.delta", item_id=msg_id, output_index=0,
                             content_index=0, delta=g, logprobs=[]))
        events += [ev("response.output_text.done", item_id=msg_id, output_index=0,
                      content_index=0, text=text, logprobs=[]),
                   ev("response.content_part.done", item_id=msg_id, output_index=0,
                      content_index=0, part=part),
                   ev("response.output_item.done", output_index=0, item=item),
                   ev("response.incomplete" if incomplete else "response.completed",
                      response=resp(final_status, [item], usage))]
        h, b = self.sse_resp(events)
        return 200, h, b, model, u, True, True

    # OpenAI embeddings
    def embeddings(self, req, headers, model, stream):
        inp = req.get("input")
        n = len(inp) if isinstance(inp, list) and inp and not isinstance(inp[0], int) else 1
        dims = int_or_none(req.get("dimensions")) or 8
        dims = max(1, min(dims, 4096))
        u = {"input": self.a.usage_in, "cached": 0, "output": 0}
        data = [{"object": "embedding", "index": i,
                 "embedding": [round(((i + 1) * (j + 3) % 17) / 17.0 - 0.5, 6)
                               for j in range(dims)]} for i in range(n)]
        obj = {"object": "list", "data": data, "model": model,
               "usage": {"prompt_tokens": u["input"], "total_tokens": u["input"]}}
        h, b = self.json_resp(obj)
        return 200, h, b, model, u, True, False

    # Anthropic messages
    def messages(self, req, headers, model, stream):
        cap = int_or_none(req.get("max_tokens"))
        u = self.usage_for(cap)
        mid = rid("msg_")
        pieces = text_pieces(u["output"])
        stop = "max_tokens" if cap is not None and u["output"] >= cap and cap < self.a.usage_out \
            else "end_turn"
        usage = {"input_tokens": u["input"], "cache_creation_input_tokens": 0,
                 "cache_read_input_tokens": u["cached"], "output_tokens": u["output"],
                 "service_tier": "standard"}
        if not stream:
            obj = {"id": mid, "type": "message", "role": "assistant", "model": model,
                   "content": [{"type": "text", "text": "".join(pieces)}],
                   "stop_reason": stop, "stop_sequence": None, "usage": usage}
            h, b = self.json_resp(obj, anthropic=True)
            return 200, h, b, model, u, True, False
        start_usage = dict(usage, output_tokens=min(1, u["output"]))
        events = [sse({"type": "message_start",
                       "message": {"id": mid, "type": "message", "role": "assistant",
                                   "model": model, "content": [], "stop_reason": None,
                                   "stop_sequence": None, "usage": start_usage}},
                      "message_start"),
                  sse({"type": "content_block_start", "index": 0,
                       "content_block": {"type": "text", "text": ""}}, "content_block_start"),
                  sse({"type": "ping"}, "ping")]
        for g in group(pieces):
            events.append(sse({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": g}},
                              "content_block_delta"))
        events += [sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
                   sse({"type": "message_delta",
                        "delta": {"stop_reason": stop, "stop_sequence": None},
                        "usage": {"output_tokens": u["output"]}}, "message_delta"),
                   sse({"type": "message_stop"}, "message_stop")]
        h, b = self.sse_resp(events, anthropic=True)
        return 200, h, b, model, u, True, True

    def models(self, req, headers, model, stream):
        data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "llmcap-test"}
                for m in MODELS]
        h, b = self.json_resp({"object": "list", "data": data})
        return 200, h, b, None, {"input": 0, "cached": 0, "output": 0}, False, False


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, provider):
        self.provider = provider
        super().__init__(addr, None)

    def process_request_thread(self, request, client_address):
        try:
            self.provider.handle_conn(request, client_address)
        except Exception as e:  # keep serving whatever one connection did
            print("provider: connection error: %r" % (e,), file=sys.stderr, flush=True)

    def shutdown_request(self, request):
        pass  # handle_conn closes (it may have replaced the socket with its TLS wrapper)


def main(argv=None):
    ap = argparse.ArgumentParser(description="stand-in LLM provider for llmcap tests")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--log", default=None, help="JSON-lines event log (appended)")
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--tls-version", choices=["1.2", "1.3"])
    ap.add_argument("--alpn", help='protocols offered, e.g. "h2,http/1.1" (TLS only; '
                    'default http/1.1)')
    ap.add_argument("--gzip", action="store_true",
                    help="gzip response bodies when Accept-Encoding allows")
    ap.add_argument("--chunked", action="store_true",
                    help="Transfer-Encoding: chunked, several chunks per body")
    ap.add_argument("--usage-in", type=int, default=12)
    ap.add_argument("--usage-cached", type=int, default=0)
    ap.add_argument("--usage-out", type=int, default=20)
    ap.add_argument("--status", type=int, default=0,
                    help="answer every request with this status and an error body")
    ap.add_argument("--delay-ms", type=int, default=0, help="wait before answering")
    ap.add_argument("--stream-delay-ms", type=int, default=0,
                    help="wait before each SSE event of a streamed answer")
    ap.add_argument("--incomplete", action="store_true",
                    help="/v1/responses: a response cut by max_output_tokens ends with "
                    "response.incomplete (status incomplete), as OpenAI does; default: "
                    "always response.completed")
    ap.add_argument("--replay", metavar="DIR",
                    help="answer requests carrying x-golden-case: NAME with DIR/NAME.json's response")
    ap.add_argument("--idle-timeout", type=float, default=30.0,
                    help="close a keep-alive connection idle this many seconds")
    a = ap.parse_args(argv)
    if bool(a.tls_cert) != bool(a.tls_key):
        ap.error("--tls-cert and --tls-key go together")
    if (a.tls_version or a.alpn) and not a.tls_cert:
        ap.error("--tls-version and --alpn need --tls-cert/--tls-key")
    if a.status and not (100 <= a.status <= 599):
        ap.error("--status must be an HTTP status code")

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGINT, lambda *_: os._exit(0))
    provider = Provider(a, Log(a.log))
    srv = Server((a.host, a.port), provider)
    print("provider: listening on %s://%s:%d" % ("https" if a.tls_cert else "http", a.host,
                                                 srv.server_address[1]), flush=True)
    srv.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    main()
