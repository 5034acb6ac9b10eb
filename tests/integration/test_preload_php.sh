#!/usr/bin/env bash
# PHP's curl extension (Debian php-cli + php-curl) through the real preload. PHP opens its
# extensions with RTLD_DEEPBIND, which would bind curl.so -> libcurl -> libssl/libc to each other
# ahead of the shim; the shim's dlopen drops the flag (preload/hook_dl.c). Over TLS and plain
# HTTP, JSON and SSE: exact charges, the 429 through curl_exec, 0 bytes of a blocked request.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/test_preload_lib.inc"
if ! command -v php >/dev/null || ! php -m 2>/dev/null | grep -qx curl; then
	echo "# php or php-curl not installed (.ci/deps installs them)"; fail "php + php-curl missing"; finish; exit 1
fi
pl_init
pl_provider tls13 $(pl_tls_args 1.3)
pl_provider plain

PHPC=$T/client.php
cat >"$PHPC" <<'EOF'
<?php
// client.php URL KEY CA N [--stream]: one curl handle (keep-alive), one JSON line per call
[$url, $key, $ca, $n] = [$argv[1], $argv[2], $argv[3], (int)$argv[4]];
$body = ["model" => "gpt-4o-mini", "max_tokens" => 20, "messages" => [["role" => "user", "content" => "hi"]]];
if (in_array("--stream", $argv)) { $body["stream"] = true; $body["stream_options"] = ["include_usage" => true]; }
$h = curl_init();
for ($i = 0; $i < $n; $i++) {
	$hdrs = [];
	curl_setopt_array($h, [CURLOPT_URL => $url, CURLOPT_POST => true, CURLOPT_POSTFIELDS => json_encode($body),
		CURLOPT_HTTPHEADER => ["Authorization: Bearer $key", "Content-Type: application/json"],
		CURLOPT_CAINFO => $ca, CURLOPT_RETURNTRANSFER => true, CURLOPT_TIMEOUT => 10,
		CURLOPT_HEADERFUNCTION => function ($c, $line) use (&$hdrs) {
			$p = explode(":", $line, 2);
			if (count($p) == 2) $hdrs[strtolower(trim($p[0]))] = trim($p[1]);
			return strlen($line);
		}]);
	$t0 = microtime(true);
	$out = curl_exec($h);
	echo json_encode(["status" => curl_getinfo($h, CURLINFO_RESPONSE_CODE), "retry_after" => $hdrs["retry-after"] ?? null,
		"x_should_retry" => $hdrs["x-should-retry"] ?? null, "ms" => round((microtime(true) - $t0) * 1000, 2),
		"body" => substr($out === false ? curl_error($h) : $out, 0, 300)]), "\n";
}
EOF
php_n() { local url=$1; shift; local n=${!#}; set -- "${@:1:$(($# - 1))}"
	LD_PRELOAD=$PRELOAD timeout 30 php "$PHPC" "$url" "$PL_KEY" "$PL_CERT/ca.pem" "$n" "$@"; }

for p in tls13 plain; do
	pl_endpoint "$p"
	pl_scenario "php curl_exec $p json" "$log" "php-$p-j" "$host" -- php_n "$url"
	pl_scenario "php curl_exec $p stream" "$log" "php-$p-s" "$host" -- php_n "$url" --stream
done

# what the shim changes for a program: dlopen(RTLD_DEEPBIND) loads the library without the flag
# (a dlopen'ed library then binds through the global scope, where the shim is)
v=$(LD_PRELOAD=$PRELOAD "$PY" -c '
import ctypes, os
lib = ctypes.CDLL("libz.so.1", mode=os.RTLD_NOW | os.RTLD_DEEPBIND)
print(lib.zlibVersion is not None)')
expect_eq "dlopen with RTLD_DEEPBIND still loads the library under the shim" True "$v"
finish
