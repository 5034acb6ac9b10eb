// go_client URL KEY N [stream|abort]: N POSTs with net/http (one client, keep-alive), one JSON line each.
// stream: the request asks for SSE with usage; "first_ms" is when the first body bytes arrived.
// abort: a stream the client gives up after its first byte (it closes the connection mid-answer).
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	url, key := os.Args[1], os.Args[2]
	n, _ := strconv.Atoi(os.Args[3])
	body := `{"model":"gpt-4o-mini","max_tokens":20,"messages":[{"role":"user","content":"hi"}]}`
	abort := len(os.Args) > 4 && os.Args[4] == "abort"
	if len(os.Args) > 4 && (os.Args[4] == "stream" || abort) {
		body = `{"model":"gpt-4o-mini","max_tokens":20,"stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}`
	}
	c := &http.Client{Timeout: 20 * time.Second}
	for i := 0; i < n; i++ {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
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
