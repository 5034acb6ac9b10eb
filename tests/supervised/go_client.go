// go_client URL KEY N [stream]: N POSTs with net/http (one client, keep-alive), one JSON line each
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
			b, _ := io.ReadAll(r.Body)
			r.Body.Close()
			out["status"] = r.StatusCode
			out["retry_after"] = r.Header.Get("retry-after")
			out["body"] = string(b)
		}
		out["ms"] = float64(time.Since(t0).Microseconds()) / 1000
		j, _ := json.Marshal(out)
		fmt.Println(string(j))
	}
}
