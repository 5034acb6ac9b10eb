// go_client URL KEY N [stream|abort]: N POSTs with net/http (one client, keep-alive), one JSON line each.
// stream: the request asks for SSE with usage; "first_ms" is when the first body bytes arrived.
// abort: a stream the client gives up after its first byte (it closes the connection mid-answer).
// GO_CLIENT_DIAL=ADDR: every connection goes to ADDR whatever the URL names (a provider reached at
// an address its name did not resolve to when llmcap run started: the SNI and Host stay the URL's).
// GO_CLIENT_PROXY=URL: through this HTTP proxy (net/http's ProxyFromEnvironment never proxies a
// loopback destination, so the test names it here; HTTPS_PROXY is set as well, for llmcap run).
//
// go_client raw ADDR FILE|- [SNI]: one connection to ADDR (TLS when SNI is given: any certificate
// accepted), FILE's bytes written, the write side closed, everything read until the end; one JSON
// line: the sha256 and length of what came back and the issuer of the server's certificate.
// GO_CLIENT_READ_DELAY_MS=N: raw waits N ms after writing before it reads (a slow reader).
package main

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

func raw() {
	out := map[string]interface{}{}
	defer func() { j, _ := json.Marshal(out); fmt.Println(string(j)) }()
	c, err := net.DialTimeout("tcp", os.Args[2], 10*time.Second)
	if err != nil {
		out["error"] = err.Error()
		return
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	var rw io.ReadWriter = c
	closeWrite := func() error { return c.(*net.TCPConn).CloseWrite() }
	if len(os.Args) > 4 {
		tc := tls.Client(c, &tls.Config{ServerName: os.Args[4], InsecureSkipVerify: true})
		if err = tc.Handshake(); err != nil {
			out["error"] = err.Error()
			return
		}
		out["issuer"] = tc.ConnectionState().PeerCertificates[0].Issuer.String()
		rw, closeWrite = tc, tc.CloseWrite
	}
	if os.Args[3] != "-" {
		b, _ := os.ReadFile(os.Args[3])
		if _, err = rw.Write(b); err != nil {
			out["error"] = err.Error()
			return
		}
		closeWrite()
	}
	if d, _ := strconv.Atoi(os.Getenv("GO_CLIENT_READ_DELAY_MS")); d > 0 {
		time.Sleep(time.Duration(d) * time.Millisecond)
	}
	h := sha256.New()
	n, err := io.Copy(h, rw)
	if err != nil {
		out["error"] = err.Error()
	}
	out["len"] = n
	out["sha256"] = hex.EncodeToString(h.Sum(nil))
}

func main() {
	if os.Args[1] == "raw" {
		raw()
		return
	}
	url_, key := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	body := `{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`
	abort := len(os.Args) > 4 && os.Args[4] == "abort"
	if len(os.Args) > 4 && (os.Args[4] == "stream" || abort) {
		body = `{"model":"gpt-4o-mini","max_tokens":20,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if d := os.Getenv("GO_CLIENT_DIAL"); d != "" {
		tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, d)
		}
	}
	if p := os.Getenv("GO_CLIENT_PROXY"); p != "" {
		pu, _ := url.Parse(p)
		tr.Proxy = http.ProxyURL(pu)
	}
	c := &http.Client{Timeout: 20 * time.Second, Transport: tr}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("POST", url_, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		t0 := time.Now()
		r, err := c.Do(req)
		out := map[string]interface{}{}
		if err != nil {
			out["status"] = 0
			out["error"] = err.Error()
		} else {
			first := make([]byte, 1)
			k, _ := io.ReadFull(r.Body, first)
			out["first_ms"] = float64(time.Since(t0).Microseconds()) / 1000
			if abort {
				r.Body.Close()
				out["status"] = r.StatusCode
				out["error"] = "aborted"
				j, _ := json.Marshal(out)
				fmt.Println(string(j))
				continue
			}
			rest, rerr := io.ReadAll(r.Body)
			if rerr != nil {
				out["error"] = rerr.Error()
			}
			b := append(first[:k], rest...)
			r.Body.Close()
			out["status"] = r.StatusCode
			out["retry_after"] = r.Header.Get("retry-after")
			out["x_should_retry"] = r.Header.Get("x-should-retry")
			out["body"] = string(b)
		}
		out["ms"] = float64(time.Since(t0).Microseconds()) / 1000
		j, _ := json.Marshal(out)
		fmt.Println(string(j))
	}
}
