/* store.c - one LMDB environment per process, fork-aware.
 *
 * LMDB rules that bite (lmdb.h caveats): an MDB_env must not be used across
 * fork(), and must not be opened twice in one process; MDB_NOTLS so reader
 * slots are not tied to threads; never MDB_WRITEMAP (any host process could
 * scribble on the map). We run MDB_NOSYNC: a crashed process loses nothing
 * (its writes are in the page cache); an OS crash can lose the last
 * transactions (see README "Durability"). lc_store_sync() flushes.
 */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "util.h"

#define LC_MAP_INITIAL ((size_t)256 << 20)

/* The map size a new environment starts with. Unit tests shrink it (hidden symbol, not a knob of
 * any shipped binary) to prove that MDB_MAP_FULL grows the map instead of failing. */
size_t lc_store_initial_map LC_HIDDEN = LC_MAP_INITIAL;
#define LC_MAXREADERS 1024

static const char *const dbnames[LC_DB_COUNT] = {"meta", "providers", "keys", "teams", "prices", "custs",
						 "counters", "outbox", "fired", "rpm", "keynames"};

static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_rwlock_t resize_lock = PTHREAD_RWLOCK_INITIALIZER;
static struct lc_store the_store;
static pid_t store_pid;
static char store_dir[4096];
static char last_error[512];
static char dir_override[4096];

/* ---- a damaged data.mdb -----------------------------------------------------------------------
 * Pages of a data.mdb that was truncated or overwritten make LMDB read past the file's end
 * (SIGBUS), follow wild pointers (SIGSEGV) or fail an assertion (abort). A thread inside a store
 * transaction (in_store) has a jump target in the frame that began it (lc_store_begin is a macro
 * around sigsetjmp); a fault or an LMDB assertion there jumps back to it, and lc_store_begin then
 * returns LC_E_STORE as if it had failed. The store is then poisoned: this process uses it no
 * more (lc_store_open says why, once). Any other signal goes to the handler the program had
 * before (default: the program dies of it as it would have); errno is kept. */
static struct sigaction prev_bus, prev_segv;
static __thread int in_store __attribute__((tls_model("initial-exec")));
static __thread sigjmp_buf store_jb;
static __thread MDB_txn *cur_txn;
static volatile sig_atomic_t poisoned;

sigjmp_buf *lc__store_jb(void)
{
	return &store_jb;
}

static void chain(const struct sigaction *prev, int sig, siginfo_t *si, void *uc)
{
	if ((prev->sa_flags & SA_SIGINFO) && prev->sa_sigaction) {
		prev->sa_sigaction(sig, si, uc);
	} else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
		prev->sa_handler(sig);
	} else {
		struct sigaction dfl;

		memset(&dfl, 0, sizeof(dfl));
		dfl.sa_handler = SIG_DFL;
		sigaction(sig, &dfl, NULL);  /* a fault re-executes and dies of it; a sent one is re-sent */
		if (si->si_code <= 0)
			raise(sig);
	}
}

static void on_fault(int sig, siginfo_t *si, void *uc)
{
	int saved = errno;

	if (in_store > 0 && si->si_code > 0) {  /* a fault (not a kill()) inside the store */
		in_store = 0;
		poisoned = 1;
		siglongjmp(store_jb, 1);
	}
	errno = saved;
	chain(sig == SIGBUS ? &prev_bus : &prev_segv, sig, si, uc);
}

static void on_assert(MDB_env *env, const char *msg)
{
	if (in_store > 0) {  /* instead of abort(): the store is damaged, not this program */
		in_store = 0;
		poisoned = 1;
		siglongjmp(store_jb, 1);
	}
}

static pthread_once_t fault_once = PTHREAD_ONCE_INIT;
static void install_fault_guard(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_fault;
	sa.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGBUS, &sa, &prev_bus);
	sigaction(SIGSEGV, &sa, &prev_segv);
}

bool lc_store_poisoned(void)
{
	return poisoned;
}

static void poison_message(void)
{
	snprintf(last_error, sizeof(last_error),
		 "%s/data.mdb is damaged (reading it faulted); restore it or re-apply the policy "
		 "(README \"Recovery\"), then restart this program", store_dir[0] ? store_dir : "the store");
}

/* ---- the trust anchor: the installed version and digest, outside data.mdb ------------------ */

static int anchor_path(char *out, size_t n)
{
	char dir[4096];

	if (lc_state_dir(dir, sizeof(dir)))
		return -1;
	snprintf(out, n, "%s/anchor", dir);
	return 0;
}

int lc_anchor_read(int64_t *version, unsigned char digest[32])
{
	char path[4200], buf[256], hex[65];
	long long v;
	ssize_t n;
	int fd;

	if (anchor_path(path, sizeof(path)))
		return 1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno == ENOENT || errno == ENOTDIR ? 1 : -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	if (sscanf(buf, "llmcap-anchor 1\nversion %lld\nsha256 %64[0-9a-f]\n", &v, hex) != 2 || v < 1 ||
	    strlen(hex) != 64)
		return -1;
	if (lc_unhex(hex, digest, 32) != 0)
		return -1;
	*version = v;
	return 0;
}

int lc_anchor_write(int64_t version, const void *payload, size_t plen)
{
	char path[4200], tmp[4300], dir[4096], hex[65], buf[256];
	unsigned char d[32], old_d[32];
	int64_t old_v = 0;
	int fd, n, rc = 0;

	if (anchor_path(path, sizeof(path)) || lc_state_dir(dir, sizeof(dir)))
		return -1;
	lc_sha256(payload, plen, d);
	if (lc_anchor_read(&old_v, old_d) == 0 && (old_v > version || (old_v == version && !memcmp(d, old_d, 32))))
		return 0;  /* a newer install wrote it already, or nothing changes */
	lc_hex(d, 32, hex);
	n = snprintf(buf, sizeof(buf), "llmcap-anchor 1\nversion %" PRId64 "\nsha256 %s\n", version, hex);
	snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0664);
	if (fd < 0)
		return -1;
	if (write(fd, buf, (size_t)n) != n || fsync(fd))
		rc = -1;
	if (close(fd))
		rc = -1;
	if (rc || rename(tmp, path)) {
		int e = errno;

		unlink(tmp);
		errno = e;
		return -1;
	}
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0) {
		fsync(fd);
		close(fd);
	}
	return 0;
}

int lc_anchor_remove(void)
{
	char path[4200];

	if (anchor_path(path, sizeof(path)))
		return -1;
	return unlink(path) && errno != ENOENT ? -1 : 0;
}

/* The store must hold at least the anchored version. create (apply, agent): a store that lost it
 * still opens, so the policy can be installed again (apply enforces the anchor's ratchet). */
static int anchor_check(MDB_txn *txn, const char *dir, bool create)
{
	unsigned char d[32];
	int64_t av = 0, sv = 0;
	MDB_val k = {7, "version"}, v;
	int r = lc_anchor_read(&av, d);

	if (r < 0) {
		snprintf(last_error, sizeof(last_error),
			 "%s/anchor: unreadable or damaged; it names the installed policy version (README \"Recovery\")",
			 dir);
		return LC_E_STORE;
	}
	if (r > 0 || create)
		return LC_OK;
	if (mdb_get(txn, the_store.dbi[LC_DB_META], &k, &v) == 0 && v.mv_size == 8)
		memcpy(&sv, v.mv_data, 8);
	if (sv >= av)
		return LC_OK;
	snprintf(last_error, sizeof(last_error),
		 "%s: the store lost its policy (version %" PRId64 " was installed; the store has %s): re-apply "
		 "version %" PRId64 " or newer (README \"Recovery\")", dir, av, sv ? "an older one" : "none", av);
	return LC_E_STORE;
}

static void atfork_child(void)
{
	/* The inherited env belongs to the parent: forget it (never close it: closing its
	 * fds would drop the parent's POSIX locks); the child reopens lazily. */
	pthread_mutex_init(&open_mu, NULL);
	pthread_rwlock_init(&resize_lock, NULL);
	the_store.env = NULL;
	store_pid = 0;
}

#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif
/* A page the kernel zeroes in any forked child (also one made by a raw clone() that skipped the
 * atfork handlers): "is this still the process that opened the store" without a getpid() per
 * call. NULL on kernels without MADV_WIPEONFORK: then getpid() decides, as before. */
static struct lc_proc_mark *proc_mark;

struct lc_proc_mark *lc_proc_mark(void)
{
	return proc_mark;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void install_atfork(void)
{
	void *p;

	pthread_atfork(NULL, NULL, atfork_child);
	p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	if (madvise(p, 4096, MADV_WIPEONFORK) != 0) {
		munmap(p, 4096);
		return;
	}
	proc_mark = p;
}

/* the store was opened by this very process */
static bool store_ours(void)
{
	if (proc_mark)
		return __atomic_load_n(&proc_mark->store_open, __ATOMIC_ACQUIRE) == 1;
	return store_pid == getpid();
}

void lc_state_dir_set(const char *dir)
{
	pthread_mutex_lock(&open_mu);
	snprintf(dir_override, sizeof(dir_override), "%s", dir ? dir : "");
	pthread_mutex_unlock(&open_mu);
}

int lc_state_dir(char *out, size_t outlen)
{
	const char *e;

	if (dir_override[0]) {
		snprintf(out, outlen, "%s", dir_override);
		return 0;
	}
	e = getenv("LLMCAP_STATE_DIR");
	if (e && *e) {
		snprintf(out, outlen, "%s", e);
		return 0;
	}
	if (access("/var/lib/llmcap", W_OK) == 0 ||
	    (access("/var/lib/llmcap", F_OK) != 0 && access("/var/lib", W_OK) == 0)) {
		snprintf(out, outlen, "/var/lib/llmcap");
		return 0;
	}
	e = getenv("XDG_STATE_HOME");
	if (e && *e) {
		snprintf(out, outlen, "%s/llmcap", e);
		return 0;
	}
	e = getenv("HOME");
	if (!e || !*e)
		return -1;
	snprintf(out, outlen, "%s/.local/state/llmcap", e);
	return 0;
}

const char *lc_store_error(void)
{
	return last_error;
}

void lc_store_path(char *out, size_t n)
{
	snprintf(out, n, "%s", store_dir);
}

static int mkdir_p(const char *dir)
{
	char tmp[4096];

	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return -1;
	return 0;
}

/* ---- a page-level check of data.mdb before LMDB writes to it --------------------------------
 * LMDB trusts its pages: an overwritten page can make a write transaction copy past a heap buffer
 * (mdb_page_copy with a garbage mp_lower) before anything faults. So at open, every page of the
 * current snapshot is checked the way mdb_chk would, through a read-only map of our own (a
 * fault there lands in the guard above): each reachable page once, its number, type and bounds,
 * every node inside its page, every child, overflow run and free-list entry below the last page.
 * A read transaction pins the snapshot while we walk (its pages cannot be reused under us). */
#define LC_PAGEHDR 16
#define LC_P_INVALID (~(uint64_t)0)

struct verify {
	const unsigned char *map;
	unsigned psize;
	uint64_t npages;
	unsigned char *seen;  /* one bit per page */
	bool freedb;
};

static uint16_t rd16(const unsigned char *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return v;
}

static uint64_t rd64(const unsigned char *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

/* pages [pgno, pgno + run) in range and seen nowhere else; the first one, or NULL */
static const unsigned char *vpage(struct verify *v, uint64_t pgno, uint64_t run)
{
	const unsigned char *pg;

	if (pgno < 2 || pgno >= v->npages || run < 1 || run > v->npages - pgno)
		return NULL;
	for (uint64_t i = pgno; i < pgno + run; i++) {
		if (v->seen[i >> 3] & (1u << (i & 7)))
			return NULL;  /* a page in two places: a cycle or a cross-link */
		v->seen[i >> 3] |= (unsigned char)(1u << (i & 7));
	}
	pg = v->map + pgno * v->psize;
	return rd64(pg) == pgno ? pg : NULL;
}

static int vtree(struct verify *v, uint64_t pgno, int depth);

static int vleaf_data(struct verify *v, const unsigned char *node, unsigned room, uint32_t dsize, uint16_t nflags)
{
	if (nflags & ~0x03u)  /* F_DUPDATA and the rest: never in our stores */
		return -1;
	if (nflags & 0x01) {  /* F_BIGDATA: an overflow run */
		const unsigned char *op;
		uint32_t pages;
		uint64_t first;

		if (room < 8)
			return -1;
		first = rd64(node);
		if (first < 2 || first >= v->npages)
			return -1;
		memcpy(&pages, v->map + first * v->psize + 12, 4);
		op = vpage(v, first, pages);
		return op && rd16(op + 10) == 0x04 && (uint64_t)pages * v->psize - LC_PAGEHDR >= dsize ? 0 : -1;
	}
	if (dsize > room)
		return -1;
	if (nflags & 0x02) {  /* F_SUBDATA: a named database's MDB_db */
		if (dsize != 48)
			return -1;
		return rd64(node + 40) == LC_P_INVALID ? 0 : vtree(v, rd64(node + 40), 0);
	}
	if (v->freedb) {  /* a free-list entry: count, then page numbers */
		uint64_t cnt;

		if (dsize < 8 || dsize % 8 || (cnt = rd64(node), cnt > dsize / 8 - 1))
			return -1;
		for (uint64_t k = 1; k <= cnt; k++)
			if (rd64(node + 8 * k) < 2 || rd64(node + 8 * k) >= v->npages)
				return -1;
	}
	return 0;
}

static int vtree(struct verify *v, uint64_t pgno, int depth)
{
	const unsigned char *pg = depth > 32 ? NULL : vpage(v, pgno, 1);
	uint16_t flags, lower, upper;

	if (!pg)
		return -1;
	flags = rd16(pg + 10);
	lower = rd16(pg + 12);
	upper = rd16(pg + 14);
	if ((flags != 0x01 && flags != 0x02) || lower < LC_PAGEHDR || lower > upper || upper > v->psize ||
	    (lower - LC_PAGEHDR) % 2 || (flags == 0x01 && lower == LC_PAGEHDR))
		return -1;
	for (unsigned i = 0; i < (lower - LC_PAGEHDR) / 2u; i++) {
		unsigned ptr = rd16(pg + LC_PAGEHDR + 2 * i), ksize;
		const unsigned char *node = pg + ptr;
		uint32_t dsize;

		if (ptr < upper || ptr + 8u > v->psize)
			return -1;
		dsize = rd16(node) | ((uint32_t)rd16(node + 2) << 16);
		ksize = rd16(node + 6);
		if (ptr + 8u + ksize > v->psize)
			return -1;
		if (flags == 0x01 ? vtree(v, dsize | ((uint64_t)rd16(node + 4) << 32), depth + 1)
				  : vleaf_data(v, node + 8 + ksize, v->psize - ptr - 8 - ksize, dsize, rd16(node + 4)))
			return -1;
	}
	return 0;
}

/* one pass of the page check: 0 when every page of the pinned snapshot passes */
static int verify_once(MDB_env *env)
{
	struct verify v = {0};
	MDB_envinfo info;
	MDB_stat st;
	MDB_txn *txn;
	mdb_filehandle_t fd;
	void *map = MAP_FAILED;
	volatile size_t maplen = 0;
	unsigned char meta[136];
	int rc = -1, m = -1;

	/* the read transaction first: the last page number read after it covers its snapshot (read
	 * before, a writer could commit a snapshot with pages past it in between) */
	if (mdb_txn_begin(env, NULL, MDB_RDONLY, &txn))
		return -1;
	if (mdb_env_stat(env, &st) || mdb_env_info(env, &info) || mdb_env_get_fd(env, &fd) ||
	    st.ms_psize < 512 || info.me_last_pgno >= info.me_mapsize / st.ms_psize) {
		mdb_txn_abort(txn);
		return -1;
	}
	v.psize = st.ms_psize;
	v.npages = info.me_last_pgno + 1;  /* size_check: all of it is in the file */
	maplen = v.npages * v.psize;
	map = mmap(NULL, maplen, PROT_READ, MAP_SHARED, fd, 0);
	v.seen = calloc(v.npages / 8 + 1, 1);
	if (map == MAP_FAILED || !v.seen)
		goto out;
	v.map = map;
	if (sigsetjmp(store_jb, 0) != 0) {  /* the file shrank under us */
		rc = -1;
		goto out;
	}
	in_store++;
	/* the meta page of the snapshot our read transaction pins, copied out at once: a writer two
	 * commits on reuses its slot (then its txnid no longer matches, and we check nothing) */
	for (int i = 0; i < 2; i++) {
		const unsigned char *slot = v.map + (size_t)i * v.psize + LC_PAGEHDR;

		memcpy(meta, slot, sizeof(meta));
		if (rd64(meta + 128) == (uint64_t)mdb_txn_id(txn) && rd64(slot + 128) == rd64(meta + 128)) {
			m = i;
			break;
		}
	}
	rc = 0;
	if (m >= 0 && rd64(meta + 120) + 1 < v.npages)
		v.npages = rd64(meta + 120) + 1;
	for (int d = 0; m >= 0 && d < 2 && !rc; d++) {  /* mm_dbs[0] the free list, [1] the main database */
		uint64_t root = rd64(meta + 24 + 48 * d + 40);

		v.freedb = d == 0;
		if (root != LC_P_INVALID)
			rc = vtree(&v, root, 0);
	}
	in_store--;
out:
	mdb_txn_abort(txn);
	free(v.seen);
	if (map != MAP_FAILED)
		munmap(map, maplen);
	return rc;
}

static int verify_store(MDB_env *env, const char *dir)
{
	/* a second look before calling it damaged: pages freed and reused by writers racing the
	 * first pass are the one way a healthy store can fail it */
	if (verify_once(env) && verify_once(env)) {
		snprintf(last_error, sizeof(last_error),
			 "%s/data.mdb is damaged (a page fails its check); restore it or re-apply the policy "
			 "(README \"Recovery\")", dir);
		return LC_E_STORE;
	}
	return LC_OK;
}

/* A state directory shared by a group (setgid or group-writable, README "A store shared by several
 * users"): the files LMDB made with our umask become group read-write, so members' programs can
 * take their reader slots and write their decisions. Only the owner (who applied) can do it. */
static void share_with_group(const char *dir)
{
	static const char *const files[] = {"data.mdb", "lock.mdb"};
	char path[4200];
	struct stat st;

	if (stat(dir, &st) || !(st.st_mode & (S_ISGID | S_IWGRP)))
		return;
	for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
		if (stat(path, &st) == 0 && st.st_uid == geteuid() && (st.st_mode & 0060) != 0060)
			chmod(path, (st.st_mode & 07777) | 0060);
	}
}

/* Every page the newest meta page counts must be in the file: a data.mdb cut short would make
 * LMDB read past its end (SIGBUS). Read the meta first, then the size (writers grow the file
 * before they publish a meta page that counts the new pages). */
static int size_check(MDB_env *env, const char *dir)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat fst;
	mdb_filehandle_t fd;

	if (mdb_env_info(env, &info) || mdb_env_stat(env, &st) || mdb_env_get_fd(env, &fd) || fstat(fd, &fst)) {
		snprintf(last_error, sizeof(last_error), "%s/data.mdb: cannot read its size", dir);
		return LC_E_STORE;
	}
	if (st.ms_psize == 0 || info.me_last_pgno >= (size_t)fst.st_size / st.ms_psize) {
		snprintf(last_error, sizeof(last_error),
			 "%s/data.mdb is truncated or corrupt (%lld bytes; its meta page counts %zu pages of %u): "
			 "restore it or re-apply the policy (README \"Recovery\")",
			 dir, (long long)fst.st_size, info.me_last_pgno + 1, st.ms_psize);
		return LC_E_STORE;
	}
	return LC_OK;
}

/* The opening write transaction: dead readers cleared, tables opened, an older compiled policy
 * upgraded, the anchor checked. An LMDB code, or LC_E_STORE from the anchor check. */
static int open_tables(MDB_env *env, const char *dir, bool create)
{
	MDB_txn *volatile txn = NULL;
	int rc, dead;

	if (sigsetjmp(store_jb, 0) != 0) {
		/* damaged beyond what LMDB reports: the env is left as it is (never closed) */
		if (txn)
			mdb_txn_abort(txn);  /* releases the writer lock for the other processes */
		return MDB_CORRUPTED;
	}
	in_store++;
	mdb_reader_check(env, &dead);
	rc = mdb_txn_begin(env, NULL, 0, (MDB_txn **)&txn);
	for (int i = 0; i < LC_DB_COUNT && !rc; i++) {
		/* MDB_CREATE only when missing: a store that has its tables is not written to at open */
		rc = mdb_dbi_open(txn, dbnames[i], 0, &the_store.dbi[i]);
		if (rc == MDB_NOTFOUND)
			rc = mdb_dbi_open(txn, dbnames[i], MDB_CREATE, &the_store.dbi[i]);
	}
	/* a policy compiled by an older llmcap is recompiled from its stored, verified payload */
	if (!rc)
		rc = lc__store_upgrade(&the_store, txn);
	if (!rc)
		rc = anchor_check(txn, dir, create);
	if (rc && txn)
		mdb_txn_abort(txn);
	else if (!rc)
		rc = mdb_txn_commit(txn);
	in_store--;
	return rc;
}

static int open_env(bool create)
{
	char dir[4096], data[4200];
	struct stat st;
	MDB_env *env = NULL;
	int rc;

	if (lc_state_dir(dir, sizeof(dir))) {
		snprintf(last_error, sizeof(last_error), "no state directory (set LLMCAP_STATE_DIR)");
		return LC_E_NOSTATE;
	}
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	if (!create && stat(data, &st) != 0) {
		int e = errno;
		int64_t av;
		unsigned char ad[32];

		if ((e == ENOENT || e == ENOTDIR) && lc_anchor_read(&av, ad) != 0) {
			snprintf(last_error, sizeof(last_error), "%s: no llmcap store (no policy installed)", dir);
			return LC_E_NOSTATE;
		}
		snprintf(last_error, sizeof(last_error), e == ENOENT
			 ? "%s: data.mdb is missing but a policy was installed: re-apply it (README \"Recovery\")"
			 : "%s/data.mdb: %s", dir, strerror(e));
		return LC_E_STORE;
	}
	if (!create && st.st_size < 2 * 4096) {
		/* LMDB would silently make an empty store of it: that is a lost store, not a new one */
		snprintf(last_error, sizeof(last_error),
			 "%s/data.mdb is truncated (%lld bytes): restore it or re-apply the policy (README \"Recovery\")",
			 dir, (long long)st.st_size);
		return LC_E_STORE;
	}
	if (create && mkdir_p(dir)) {
		snprintf(last_error, sizeof(last_error), "%s: %s", dir, strerror(errno));
		return LC_E_STORE;
	}
	rc = mdb_env_create(&env);
	if (!rc)
		rc = mdb_env_set_maxdbs(env, LC_DB_COUNT + 2);
	if (!rc)
		rc = mdb_env_set_maxreaders(env, LC_MAXREADERS);
	if (!rc)
		rc = mdb_env_set_mapsize(env, lc_store_initial_map);
	if (!rc)
		rc = mdb_env_open(env, dir, MDB_NOTLS | MDB_NOSYNC, 0664);
	if (rc)
		goto fail;
	rc = size_check(env, dir);
	if (rc) {
		mdb_env_close(env);
		return rc;
	}
	rc = verify_store(env, dir);
	if (rc) {
		mdb_env_close(env);
		return rc;
	}
	if (create)
		share_with_group(dir);
	pthread_once(&fault_once, install_fault_guard);
	mdb_env_set_assert(env, on_assert);
	rc = open_tables(env, dir, create);
	if (rc == LC_E_STORE) {  /* the anchor check said why */
		mdb_env_close(env);
		return rc;
	}
	if (!rc && poisoned)
		rc = MDB_CORRUPTED;
	if (rc)
		goto fail;
	the_store.env = env;
	store_pid = getpid();
	if (proc_mark)
		__atomic_store_n(&proc_mark->store_open, 1, __ATOMIC_RELEASE);
	snprintf(store_dir, sizeof(store_dir), "%s", dir);
	return LC_OK;
fail:
	if (poisoned) {
		/* never closed: its map has our zero pages in it, and a second env must not be opened */
		snprintf(store_dir, sizeof(store_dir), "%s", dir);
		poison_message();
		return LC_E_STORE;
	}
	snprintf(last_error, sizeof(last_error), "%s: %s", dir, mdb_strerror(rc));
	if (env)
		mdb_env_close(env);
	return LC_E_STORE;
}

int lc_store_open(bool create, struct lc_store **out)
{
	int rc = LC_OK;

	pthread_once(&atfork_once, install_atfork);
	if (poisoned) {
		poison_message();
		return LC_E_STORE;
	}
	if (the_store.env && store_ours()) {
		*out = &the_store;
		return LC_OK;
	}
	pthread_mutex_lock(&open_mu);
	if (!store_ours())
		the_store.env = NULL;  /* a raw clone() that skipped atfork: never reuse the parent's env */
	if (!the_store.env)
		rc = open_env(create);
	pthread_mutex_unlock(&open_mu);
	if (rc == LC_OK)
		*out = &the_store;
	return rc;
}

int lc__store_begin(struct lc_store *s, bool write, MDB_txn **txn)
{
	int rc;

	if (poisoned)
		return LC_E_STORE;
	in_store++;
	for (int attempt = 0; attempt < 3; attempt++) {
		pthread_rwlock_rdlock(&resize_lock);
		rc = mdb_txn_begin(s->env, NULL, write ? 0 : MDB_RDONLY, txn);
		if (rc != MDB_MAP_RESIZED)
			break;
		/* another process grew the map: adopt its size (needs no txn of ours active) */
		pthread_rwlock_unlock(&resize_lock);
		pthread_rwlock_wrlock(&resize_lock);
		mdb_env_set_mapsize(s->env, 0);
		pthread_rwlock_unlock(&resize_lock);
	}
	if (rc) {
		pthread_rwlock_unlock(&resize_lock);
		in_store--;
		return rc;
	}
	cur_txn = *txn;
	return 0;
}

int lc__store_faulted(void)
{
	/* we jumped out of LMDB mid-operation: give back the writer lock and the resize lock, and
	 * never touch this env again (its state is unknown; lc_store_open refuses from now on) */
	MDB_txn *txn = cur_txn;

	cur_txn = NULL;
	in_store = 0;
	poisoned = 1;
	if (txn && sigsetjmp(store_jb, 0) == 0) {
		in_store = 1;
		mdb_txn_abort(txn);
	}
	in_store = 0;
	pthread_rwlock_unlock(&resize_lock);
	poison_message();
	return LC_E_STORE;
}

int lc_store_end(struct lc_store *s, MDB_txn *txn, bool commit)
{
	int rc = 0;

	cur_txn = NULL;
	if (commit)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&resize_lock);
	in_store--;
	if (rc == MDB_MAP_FULL) {
		lc_store_grow(s, NULL);
		return MDB_MAP_FULL;
	}
	return rc;
}

int lc_store_finish(struct lc_store *s, MDB_txn *txn, int rc)
{
	int end = lc_store_end(s, txn, rc == 0);

	if (rc == MDB_MAP_FULL)
		lc_store_grow(s, NULL);  /* the next attempt has room (a commit's MAP_FULL grew already) */
	return rc ? rc : end;
}

int lc_store_grow(struct lc_store *s, MDB_txn *txn)
{
	MDB_envinfo info;
	int rc;

	if (txn) {
		cur_txn = NULL;
		mdb_txn_abort(txn);
		pthread_rwlock_unlock(&resize_lock);
		in_store--;
	}
	pthread_rwlock_wrlock(&resize_lock);
	mdb_env_info(s->env, &info);
	rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2);
	pthread_rwlock_unlock(&resize_lock);
	lc_log(LC_LOG_INFO, "store map grown to %zu MiB", info.me_mapsize * 2 >> 20);
	return rc;
}

int lc_store_sync(void)
{
	struct lc_store *s;
	int rc = lc_store_open(false, &s);

	if (rc)
		return rc;
	return mdb_env_sync(s->env, 1);
}
