# llmcap - spend and usage limits for LLM API calls, enforced inside the calling process.
#
#   make              build everything into build/
#   make test         unit + integration tests (installs build/test deps first via .ci/deps)
#   make demo         the main job: stand-in provider, signed policy, examples/chat until 429, status
#   make bench        benchmarks (figures, not tests)
#   make install      PREFIX=/usr/local DESTDIR=
#   make test SANITIZE=1   ASan + UBSan, in build-san/ (the preload library itself is built without
#                          them, since it is injected into uninstrumented programs)
#   make fuzz         libFuzzer targets (clang) into build/fuzz/; FUZZ_SECONDS=N also runs each
#                     for N seconds on a copy of its seed corpus (fuzz/corpus/TARGET) and fails on a crash

-include config.mak

VERSION_MAJOR = 0
VERSION_MINOR = 1
VERSION_PATCH = 0
VERSION = $(VERSION_MAJOR).$(VERSION_MINOR).$(VERSION_PATCH)

PREFIX  ?= /usr/local
DESTDIR ?=
bindir     = $(PREFIX)/bin
libdir     = $(PREFIX)/lib
includedir = $(PREFIX)/include
pkgconfigdir = $(libdir)/pkgconfig

CC      ?= cc
PQ_CFLAGS := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
OPT     ?= -O2 -g
WARN    = -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter -Wformat=2 -Wno-format-truncation -Wno-format-nonliteral
CFLAGS_BASE = -std=gnu11 $(OPT) $(WARN) -fPIC -fvisibility=hidden -D_GNU_SOURCE \
	-Ishared-state -Isdk/include -Ipreload -Iserver $(PQ_CFLAGS)
ifeq ($(SANITIZE),1)
SAN = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
endif
CFLAGS_ALL = $(CFLAGS_BASE) $(SAN) $(CFLAGS)
LDFLAGS_ALL = $(SAN) $(LDFLAGS)

CORE_LIBS = -llmdb -ljansson -lsodium -lz -lpthread -ldl -lm
CURL_LIBS = -lcurl
# the supervisor's relay (cli/relay.c) terminates and originates TLS with OpenSSL
TLS_LIBS  = -lssl -lcrypto
SRV_LIBS  = -lmicrohttpd -lpq

# SANITIZE=1 builds into its own directory: instrumented and plain objects never mix (make does not
# know that flags changed, so one directory would link stale plain objects with -fsanitize)
ifeq ($(SANITIZE),1)
B = build-san
else
B = build
endif
O = $(B)/obj
OP = $(B)/obj-preload

SS_SRC  = $(sort $(wildcard shared-state/*.c))
SDK_SRC = $(sort $(wildcard sdk/*.c))
PRE_SRC = $(sort $(wildcard preload/*.c))
PRE_LOGIC_SRC = $(filter-out preload/hook% preload/engine_%,$(PRE_SRC))
# the preload is two libraries: the hooks (libc only) and the engine they dlopen on first use
PRE_HOOK_SRC = $(filter preload/hook% preload/shim.c,$(PRE_SRC))
PRE_ENG_SRC = $(filter-out $(PRE_HOOK_SRC),$(PRE_SRC))
SRV_SRC = $(sort $(wildcard server/*.c))
SRV_LOGIC_SRC = $(filter-out server/main.c,$(SRV_SRC))
CLI_SRC = $(sort $(wildcard cli/*.c))
UNIT_SRC = $(sort $(wildcard tests/unit/test_*.c))
TESTBIN_SRC = $(sort $(wildcard tests/bin/*.c))
BENCH_SRC = $(sort $(wildcard bench/*.c))

obj = $(patsubst %.c,$(O)/%.o,$(1))
# the built-in price book (data/prices.json) is compiled into the engine as a byte array
BOOK_C = $(B)/gen/price_book.c
SS_OBJ  = $(call obj,$(SS_SRC)) $(O)/gen/price_book.o
SDK_OBJ = $(call obj,$(SDK_SRC))
PRE_LOGIC_OBJ = $(call obj,$(PRE_LOGIC_SRC))
SRV_LOGIC_OBJ = $(call obj,$(SRV_LOGIC_SRC))
CLI_OBJ = $(call obj,$(CLI_SRC))
# the preload is built separately, never with sanitizers and never against libssl/libcurl
PRE_OBJ = $(patsubst %.c,$(OP)/%.o,$(PRE_HOOK_SRC))
PRE_ENG_OBJ = $(patsubst %.c,$(OP)/%.o,$(SS_SRC) $(PRE_ENG_SRC)) $(OP)/gen/price_book.o

SONAME = libllmcap.so.$(VERSION_MAJOR)
LIB_SO = $(B)/libllmcap.so.$(VERSION)
LIB_A  = $(B)/libllmcap.a
PRELOAD = $(B)/libllmcap_preload.so
PRELOAD_ENGINE = $(B)/libllmcap_preload_engine.so
CLI = $(B)/llmcap
SERVER = $(B)/llmcap-server
CHAT = $(B)/examples/chat
UNIT_BIN = $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
TEST_BIN = $(patsubst tests/bin/%.c,$(B)/tests/bin/%,$(TESTBIN_SRC))
# the same multi client on Debian's GnuTLS libcurl (libcurl3-gnutls: the runtime library only, linked
# by path; its API is libcurl's, so the headers of libcurl4-openssl-dev serve)
CURL_GNUTLS = $(wildcard /usr/lib/x86_64-linux-gnu/libcurl-gnutls.so.4 /usr/lib/*/libcurl-gnutls.so.4)
ifneq ($(CURL_GNUTLS),)
TEST_BIN += $(B)/tests/bin/lc_multi_gnutls
endif
BENCH_BIN = $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))

PROGRAMS = $(LIB_SO) $(B)/libllmcap.so $(LIB_A) $(CLI) $(CHAT) $(B)/llmcap.pc
ifneq ($(PRE_SRC),)
PROGRAMS += $(PRELOAD) $(PRELOAD_ENGINE)
endif
ifneq ($(SRV_SRC),)
PROGRAMS += $(SERVER)
endif

.PHONY: all test unit integration demo bench install uninstall clean deps fuzz
# objects reached only through pattern rules (the unit tests' preload/server modules) are not
# intermediates to delete after each build: keep every target, so a second `make test` compiles nothing
.SECONDARY:
all: $(PROGRAMS)

$(O)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# the dashboard's files are built into llmcap-server (.incbin in server/dash.c)
$(O)/server/dash.o: $(wildcard server/dash/*)

$(OP)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -DLC_PRELOAD_BUILD -MMD -MP -c $< -o $@

$(BOOK_C): data/prices.json
	@mkdir -p $(dir $@)
	{ echo '/* generated from data/prices.json by the Makefile: do not edit */'; \
	  echo '#include <stddef.h>'; \
	  echo 'const unsigned char lc_price_book_data[] = {'; \
	  od -An -v -tx1 $< | sed -e 's/ *\([0-9a-f][0-9a-f]\)/0x\1,/g'; \
	  echo '0x00};'; \
	  echo 'const size_t lc_price_book_size = sizeof(lc_price_book_data) - 1;'; } > $@.tmp
	mv $@.tmp $@

$(O)/gen/price_book.o: $(BOOK_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(OP)/gen/price_book.o: $(BOOK_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -DLC_PRELOAD_BUILD -c $< -o $@

$(LIB_SO): $(SS_OBJ) $(SDK_OBJ)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS_ALL) -o $@ $^ $(CORE_LIBS) $(CURL_LIBS)

$(B)/libllmcap.so: $(LIB_SO)
	ln -sf libllmcap.so.$(VERSION) $(B)/$(SONAME)
	ln -sf libllmcap.so.$(VERSION) $@

$(LIB_A): $(SS_OBJ) $(SDK_OBJ)
	rm -f $@
	ar rcs $@ $^

# the hook library: DT_NEEDED on libc only (dlopen/dlsym and pthread are in glibc's libc)
$(PRELOAD): $(PRE_OBJ)
	$(CC) -shared -Wl,--no-undefined $(LDFLAGS) -o $@ $^

# the engine library, dlopen()ed by the hook library from its own directory; lc_pl_depth and
# lc_pl_forkgen come from the hook library at run time, hence no --no-undefined
$(PRELOAD_ENGINE): $(PRE_ENG_OBJ)
	$(CC) -shared $(LDFLAGS) -o $@ $^ $(CORE_LIBS)

$(CLI): $(CLI_OBJ) $(SS_OBJ)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CORE_LIBS) $(CURL_LIBS) $(TLS_LIBS)

$(SERVER): $(call obj,$(SRV_SRC)) $(SS_OBJ)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(CORE_LIBS) $(CURL_LIBS) $(SRV_LIBS)

$(CHAT): examples/chat.c $(B)/libllmcap.so
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isdk/include -o $@ examples/chat.c -L$(B) -lllmcap $(CURL_LIBS) -Wl,-rpath,'$$ORIGIN/..'

$(B)/llmcap.pc: llmcap.pc.in Makefile
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(libdir)|' -e 's|@INCLUDEDIR@|$(includedir)|' \
	    -e 's|@VERSION@|$(VERSION)|' $< > $@

# unit tests link the plain modules directly (no LD_PRELOAD)
$(B)/tests/%: tests/unit/%.c $(SS_OBJ) $(SDK_OBJ) $(PRE_LOGIC_OBJ) $(SRV_LOGIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -o $@ $^ $(LDFLAGS_ALL) -lcmocka $(CORE_LIBS) $(CURL_LIBS) $(SRV_LIBS)

# test_sdk makes allocations fail for real: llmcap's own malloc/calloc/realloc calls are routed
# through the test's wrappers at link time (nothing in the library knows)
$(B)/tests/test_sdk: LDFLAGS_ALL += -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc

# client programs the integration tests drive under the preload (e.g. a libcurl multi client):
# built like any client, never with sanitizers
$(B)/tests/bin/%: tests/bin/%.c tests/bin/client.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $< $(LDFLAGS) $(CURL_LIBS)

$(B)/tests/bin/lc_multi_gnutls: tests/bin/lc_multi.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(firstword $(CURL_GNUTLS))

# bench_leases drives the server's lease calls in process (srv_handle, no socket)
$(B)/bench/bench_leases: bench/bench_leases.c $(SS_OBJ) $(SDK_OBJ) $(SRV_LOGIC_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDFLAGS_ALL) $(CORE_LIBS) $(CURL_LIBS) $(SRV_LIBS)

$(B)/bench/%: bench/%.c $(SS_OBJ) $(SDK_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -o $@ $^ $(LDFLAGS_ALL) $(CORE_LIBS) $(CURL_LIBS)

deps:
	@bash .ci/deps

test: deps
	$(MAKE) all $(UNIT_BIN) $(TEST_BIN)
	@LLMCAP_SAN="$(SAN)" ASAN_OPTIONS=verify_asan_link_order=0 bash tests/run.sh $(B)

unit: all $(UNIT_BIN)
	@LLMCAP_SAN="$(SAN)" ASAN_OPTIONS=verify_asan_link_order=0 bash tests/run.sh $(B) unit

demo: deps
	$(MAKE) all
	@bash examples/demo.sh $(B)

bench: deps
	$(MAKE) all $(BENCH_BIN) $(TEST_BIN)
	@bash bench/run.sh $(B)

# ---- fuzzing: clang + libFuzzer, objects in their own directory (never mixed with the gcc build) ----
FUZZ_CC = clang
FUZZ_SAN = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZ_CFLAGS = -std=gnu11 -O1 -g $(WARN) -Wno-unknown-warning-option -fPIC -D_GNU_SOURCE \
	-Ishared-state -Iserver $(PQ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FO = $(B)/obj-fuzz
FUZZ_SRC = $(sort $(wildcard fuzz/*.c))
FUZZ_BIN = $(patsubst fuzz/%.c,$(B)/fuzz/%,$(FUZZ_SRC))
# every shared-state module (by wildcard: files added by a split are picked up), the generated
# price book, and the server's modules but its main()
FUZZ_OBJ = $(patsubst %.c,$(FO)/%.o,$(SS_SRC) $(SRV_LOGIC_SRC)) $(FO)/gen/price_book.o
FUZZ_SECONDS ?= 0

$(FO)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FO)/server/dash.o: $(wildcard server/dash/*)

$(FO)/gen/price_book.o: $(BOOK_C)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -c $< -o $@

$(B)/fuzz/%: fuzz/%.c fuzz/fuzz.h $(FUZZ_OBJ)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Ifuzz -fsanitize=fuzzer -o $@ $< $(FUZZ_OBJ) \
	  $(CORE_LIBS) $(CURL_LIBS) $(SRV_LIBS)

fuzz: deps
	$(MAKE) $(FUZZ_BIN)
	@if [ "$(FUZZ_SECONDS)" != 0 ]; then bash fuzz/run.sh $(B) $(FUZZ_SECONDS) $(FUZZ_BIN); fi

install: all
	install -d $(DESTDIR)$(bindir) $(DESTDIR)$(libdir) $(DESTDIR)$(includedir) $(DESTDIR)$(pkgconfigdir)
	install -m 0755 $(CLI) $(DESTDIR)$(bindir)/llmcap
	install -m 0755 $(LIB_SO) $(DESTDIR)$(libdir)/
	ln -sf libllmcap.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sf libllmcap.so.$(VERSION) $(DESTDIR)$(libdir)/libllmcap.so
	install -m 0644 $(LIB_A) $(DESTDIR)$(libdir)/
	install -m 0644 sdk/include/llmcap.h $(DESTDIR)$(includedir)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(libdir)|' -e 's|@INCLUDEDIR@|$(includedir)|' \
	    -e 's|@VERSION@|$(VERSION)|' llmcap.pc.in > $(DESTDIR)$(pkgconfigdir)/llmcap.pc
	chmod 0644 $(DESTDIR)$(pkgconfigdir)/llmcap.pc
	if [ -f $(PRELOAD) ]; then install -m 0755 $(PRELOAD) $(PRELOAD_ENGINE) $(DESTDIR)$(libdir)/; fi
	if [ -f $(SERVER) ]; then install -m 0755 $(SERVER) $(DESTDIR)$(bindir)/; fi

uninstall:
	rm -f $(DESTDIR)$(bindir)/llmcap $(DESTDIR)$(bindir)/llmcap-server \
	  $(DESTDIR)$(libdir)/libllmcap.so* $(DESTDIR)$(libdir)/libllmcap.a \
	  $(DESTDIR)$(libdir)/libllmcap_preload.so $(DESTDIR)$(libdir)/libllmcap_preload_engine.so \
	  $(DESTDIR)$(includedir)/llmcap.h \
	  $(DESTDIR)$(pkgconfigdir)/llmcap.pc

clean:
	rm -rf $(B)

-include $(shell find $(B) -name '*.d' 2>/dev/null)
