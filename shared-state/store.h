/* store.h - the host's LMDB environment: one per process, lazily opened,
 * reopened after fork(), grown on MDB_MAP_FULL, stale readers cleared.
 * Internal to the engine.
 */
#ifndef LC_STORE_H
#define LC_STORE_H

#include <lmdb.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>

enum lc_dbi {
	LC_DB_META = 0,   /* "version", "expires_at", "issued_at", "payload", "cfg", "host_id", "epoch", "seq", "webhooks" */
	LC_DB_PROVIDERS,  /* "host" or "host:port" -> struct lc_rec_provider */
	LC_DB_KEYS,       /* sha256 (32 bytes) -> struct lc_rec_key */
	LC_DB_TEAMS,      /* name -> struct lc_rec_limits */
	LC_DB_PRICES,     /* model or alias -> struct lc_price (price.h) */
	LC_DB_CUSTS,      /* customer id -> struct lc_rec_cust */
	LC_DB_COUNTERS,   /* ledger records, decision stats, tickets (engine_int.h) */
	LC_DB_OUTBOX,     /* u64 seq (big endian) -> event JSON */
	LC_DB_FIRED,      /* dedup key -> "" */
	LC_DB_RPM,        /* customer id -> ring of admission times (ms) */
	LC_DB_KEYNAMES,   /* key name -> struct lc_rec_key (same record as LC_DB_KEYS) */
	LC_DB_COUNT
};

struct lc_store {
	MDB_env *env;
	MDB_dbi dbi[LC_DB_COUNT];
};

/* Open (or reuse) the process's store. create: make the directory and the environment if missing
 * (apply, agent); otherwise a missing store is LC_E_NOSTATE. Returns LC_OK or an engine error. */
int lc_store_open(bool create, struct lc_store **out);

/* Begin a transaction; holds the process's resize lock until lc_store_end(). A macro: the caller's
 * frame is where a fault inside the transaction (a damaged data.mdb: SIGBUS, SIGSEGV, an LMDB
 * assertion) lands, and lc_store_begin then returns LC_E_STORE as if it had failed. So: call
 * lc_store_end in the same function, and on a failed begin touch nothing set after it. */
int lc__store_begin(struct lc_store *s, bool write, MDB_txn **txn);
int lc__store_faulted(void);
sigjmp_buf *lc__store_jb(void);
#define lc_store_begin(s, write, txn)                                          \
	__extension__({                                                        \
		int lc_begin_rc_;                                              \
		if (sigsetjmp(*lc__store_jb(), 0) == 0)                        \
			lc_begin_rc_ = lc__store_begin((s), (write), (txn));   \
		else                                                           \
			lc_begin_rc_ = lc__store_faulted();                    \
		lc_begin_rc_;                                                  \
	})
#if defined(__GNUC__) && !defined(__clang__)
/* by the contract above, nothing a caller set after lc_store_begin is read after a fault */
#pragma GCC diagnostic ignored "-Wclobbered"
#endif
/* Commit (commit=true) or abort, and release the resize lock. Returns 0, or an LMDB error;
 * MDB_MAP_FULL means: the map was grown, run the transaction again. */
int lc_store_end(struct lc_store *s, MDB_txn *txn, bool commit);
/* Commit when rc == 0, else abort; grows the map when rc (or the commit) is MDB_MAP_FULL.
 * Returns rc, or the commit's result. For write paths that do not retry themselves. */
int lc_store_finish(struct lc_store *s, MDB_txn *txn, int rc);
/* After an MDB_MAP_FULL from a put inside a transaction: abort it, grow the map; caller retries. */
int lc_store_grow(struct lc_store *s, MDB_txn *txn);
/* Per-process facts in a page the kernel zeroes in a forked child (MADV_WIPEONFORK), read
 * without a syscall; NULL when the kernel cannot do that (callers then use getpid()). */
struct lc_proc_mark {
	int store_open;      /* this process opened the store */
	int ident_known;     /* pid and pstart below are this process's */
	int32_t pid;
	uint64_t pstart;
	uint64_t salt;       /* per-process random bits, 0 until drawn */
};
struct lc_proc_mark *lc_proc_mark(void);
extern size_t lc_store_initial_map;   /* bytes; tests only */

/* Called inside the opening write transaction (engine_policy.c): recompiles a policy that an
 * older llmcap compiled, from the payload it verified at apply time. 0 ok. */
int lc__store_upgrade(struct lc_store *s, MDB_txn *txn);

/* The trust anchor ($STATE/anchor): the installed policy's version and payload SHA-256, kept
 * outside data.mdb so a lost or emptied store fails closed instead of starting over.
 * read: 0 found, 1 none, -1 unreadable/damaged. write: atomic (temp file, fsync, rename);
 * keeps a newer anchor. */
int lc_anchor_read(int64_t *version, unsigned char digest[32]);
int lc_anchor_write(int64_t version, const void *payload, size_t plen);
int lc_anchor_remove(void);
/* A read of the map faulted (data.mdb damaged under us): this process no longer uses the store. */
bool lc_store_poisoned(void);

/* Last open error, for messages. */
const char *lc_store_error(void);
void lc_store_path(char *out, size_t n);

#endif
