#!/usr/bin/env bash
# make install: the library (versioned soname), the header, llmcap.pc, the CLI, the preload; a
# program builds against the installed copy with pkg-config; only llmcap_* symbols are exported.
. "$(dirname "$0")/lib.sh"

P=$T/prefix
check "make install PREFIX=... succeeds" make -s -C "$LC_ROOT" install PREFIX="$P" B="$B" ${LLMCAP_SAN:+SANITIZE=1} >/dev/null
for f in bin/llmcap bin/llmcap-server lib/libllmcap.so.0.1.0 lib/libllmcap.so.0 lib/libllmcap.so \
	 lib/libllmcap.a lib/libllmcap_preload.so lib/libllmcap_preload_engine.so include/llmcap.h lib/pkgconfig/llmcap.pc; do
	check "installed $f" test -e "$P/$f"
done
soname=$(readelf -d "$P/lib/libllmcap.so.0.1.0" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
expect_eq "versioned soname" "libllmcap.so.0" "$soname"
bad=$(nm -D --defined-only "$P/lib/libllmcap.so.0.1.0" | awk '{print $3}' | grep -v '^llmcap_' | grep -v '^_' || true)
expect_eq "only llmcap_* symbols are exported" "" "$bad"
cat > "$T/app.c" <<'C'
#include <llmcap.h>
#include <stdio.h>
#include <string.h>
int main(void) {
	llmcap *lc; llmcap_call *c;
	const char *h[] = {"Authorization: Bearer k", NULL};
	if (llmcap_open(&lc, NULL) != LLMCAP_OK) return 1;
	if (llmcap_admit(lc, "https://example.com/v1/chat/completions", h, "{}", 2, &c) != LLMCAP_OK) return 2;
	printf("%s %d %s\n", llmcap_version(), llmcap_call_verdict(c), llmcap_strerror(LLMCAP_E_STORE));
	llmcap_call_free(c); llmcap_close(lc);
	return strcmp(llmcap_version(), LLMCAP_VERSION_STRING) != 0;
}
C
flags=$(PKG_CONFIG_PATH=$P/lib/pkgconfig pkg-config --cflags --libs llmcap)
check "pkg-config knows llmcap" test -n "$flags"
check "a program compiles against the installed header and library" \
	cc -Wall -Werror ${LLMCAP_SAN:-} -o "$T/app" "$T/app.c" $flags -Wl,-rpath,"$P/lib"
out=$("$T/app")
expect_eq "it runs: version, PASS for a non-provider, strerror" "0.1.0 0 the llmcap state store is unusable" "$out"
check "it is linked against the installed soname" sh -c "ldd '$T/app' | grep -q '$P/lib/libllmcap.so.0'"
check "static linking works too" cc ${LLMCAP_SAN:-} -o "$T/app-static" "$T/app.c" -I"$P/include" "$P/lib/libllmcap.a" \
	$(pkg-config --libs libcurl jansson libsodium zlib) -llmdb -lpthread -ldl -lm
check "DESTDIR stages under the prefix" make -s -C "$LC_ROOT" install PREFIX=/usr DESTDIR="$T/stage" B="$B" ${LLMCAP_SAN:+SANITIZE=1} >/dev/null
check "staged library" test -e "$T/stage/usr/lib/libllmcap.so.0.1.0"
check "staged .pc names the final prefix" grep -q '^prefix=/usr$' "$T/stage/usr/lib/pkgconfig/llmcap.pc"
finish
