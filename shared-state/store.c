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
#include <pthread.h>
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

static int open_env(bool create)
{
	char dir[4096], data[4200];
	struct stat st;
	MDB_env *env = NULL;
	MDB_txn *txn = NULL;
	int rc, dead;

	if (lc_state_dir(dir, sizeof(dir))) {
		snprintf(last_error, sizeof(last_error), "no state directory (set LLMCAP_STATE_DIR)");
		return LC_E_NOSTATE;
	}
	snprintf(data, sizeof(data), "%s/data.mdb", dir);
	if (!create && stat(data, &st) != 0) {
		snprintf(last_error, sizeof(last_error), "%s: no llmcap store (no policy installed)", dir);
		return errno == ENOENT || errno == ENOTDIR ? LC_E_NOSTATE : LC_E_STORE;
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
	mdb_reader_check(env, &dead);
	rc = mdb_txn_begin(env, NULL, 0, &txn);
	if (rc)
		goto fail;
	for (int i = 0; i < LC_DB_COUNT; i++) {
		rc = mdb_dbi_open(txn, dbnames[i], MDB_CREATE, &the_store.dbi[i]);
		if (rc) {
			mdb_txn_abort(txn);
			goto fail;
		}
	}
	/* a policy compiled by an older llmcap is recompiled from its stored, verified payload */
	rc = lc__store_upgrade(&the_store, txn);
	if (rc) {
		mdb_txn_abort(txn);
		goto fail;
	}
	rc = mdb_txn_commit(txn);
	if (rc)
		goto fail;
	the_store.env = env;
	store_pid = getpid();
	if (proc_mark)
		__atomic_store_n(&proc_mark->store_open, 1, __ATOMIC_RELEASE);
	snprintf(store_dir, sizeof(store_dir), "%s", dir);
	return LC_OK;
fail:
	snprintf(last_error, sizeof(last_error), "%s: %s", dir, mdb_strerror(rc));
	if (env)
		mdb_env_close(env);
	return LC_E_STORE;
}

int lc_store_open(bool create, struct lc_store **out)
{
	int rc = LC_OK;

	pthread_once(&atfork_once, install_atfork);
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

int lc_store_begin(struct lc_store *s, bool write, MDB_txn **txn)
{
	int rc;

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
	if (rc)
		pthread_rwlock_unlock(&resize_lock);
	return rc;
}

int lc_store_end(struct lc_store *s, MDB_txn *txn, bool commit)
{
	int rc = 0;

	if (commit)
		rc = mdb_txn_commit(txn);
	else
		mdb_txn_abort(txn);
	pthread_rwlock_unlock(&resize_lock);
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
		mdb_txn_abort(txn);
		pthread_rwlock_unlock(&resize_lock);
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
