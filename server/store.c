/* store.c - the server's store: the table primitives (srv_kv_*, srv_cursor_*)
 * dispatched to LMDB (here) or PostgreSQL (store_pg.c), and the embedded LMDB
 * store itself.
 *
 * One environment in the data directory, MDB_NOTLS (libmicrohttpd threads
 * come and go), never MDB_WRITEMAP. The map grows on MDB_MAP_FULL: every
 * transaction holds maplock shared, and growing takes it exclusive, so
 * mdb_env_set_mapsize never runs with a transaction open in this process.
 * Durable by default (no MDB_NOSYNC): an admin change or an accepted usage
 * report is on disk before the answer goes out.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store_int.h"
#include "util.h"

#define SRV_MAP_INITIAL ((size_t)64 << 20)

const char *const srv_db_names[SRV_DB_COUNT] = {
	"meta", "keys", "teams", "customers", "invites", "hosts", "totals", "outbox", "fired", "audit",
	"hostcreds", "enroll",
};

bool srv_store_is_url(const char *where)
{
	return !strncmp(where, "postgresql://", 13) || !strncmp(where, "postgres://", 11);
}

/* One server per data directory: an flock on DIR/server.lock, held while the
 * store is open (the kernel drops it when the process dies). */
static int lock_dir(struct srv *s, const char *dir, char *err, size_t errlen)
{
	char path[4096], pid[32] = "";
	snprintf(path, sizeof path, "%s/server.lock", dir);
	s->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (s->lock_fd < 0) {
		lc_errf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		int e = errno;
		ssize_t n = pread(s->lock_fd, pid, sizeof pid - 1, 0);
		pid[n > 0 ? strcspn(pid, "\n") : 0] = 0;
		close(s->lock_fd);
		s->lock_fd = -1;
		if (e == EWOULDBLOCK)
			lc_errf(err, errlen, "%s is in use by another llmcap-server%s%s%s; one server per data directory",
				dir, pid[0] ? " (pid " : "", pid, pid[0] ? ")" : "");
		else
			lc_errf(err, errlen, "cannot lock %s: %s", path, strerror(e));
		return -1;
	}
	int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
	if (ftruncate(s->lock_fd, 0) != 0 || pwrite(s->lock_fd, pid, (size_t)n, 0) != n)
		lc_log(LC_LOG_INFO, "llmcap-server: cannot write the pid to %s: %s", path, strerror(errno));
	return 0;
}

static void unlock_dir(struct srv *s)
{
	if (s->lock_fd >= 0)
		close(s->lock_fd);   /* drops the flock */
	s->lock_fd = -1;
}

int srv_store_open(struct srv *s, const char *dir, char *err, size_t errlen)
{
	MDB_txn *txn = NULL;
	int rc;
	srv_dbi *dbs[SRV_DB_COUNT] = {
		&s->db_meta, &s->db_keys, &s->db_teams, &s->db_cust, &s->db_invites, &s->db_hosts,
		&s->db_totals, &s->db_outbox, &s->db_fired, &s->db_audit, &s->db_hostcreds, &s->db_enroll,
	};

	pthread_mutex_init(&s->pub_mu, NULL);
	pthread_cond_init(&s->pub_cv, NULL);
	if (srv_store_is_url(dir)) {
		for (int i = 0; i < SRV_DB_COUNT; i++)
			*dbs[i] = (srv_dbi)i;
		s->lock_fd = -1;
		if (srv_pg_open(s, dir, err, errlen) == 0)
			return 0;
		pthread_cond_destroy(&s->pub_cv);
		pthread_mutex_destroy(&s->pub_mu);
		return -1;
	}
	if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
		lc_errf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
		return -1;
	}
	if (lock_dir(s, dir, err, errlen) != 0)
		return -1;
	pthread_rwlock_init(&s->maplock, NULL);
	if ((rc = mdb_env_create(&s->env)) != 0)
		goto fail;
	mdb_env_set_maxdbs(s->env, 16);
	mdb_env_set_maxreaders(s->env, 256);
	s->mapsize = s->map_initial ? s->map_initial : SRV_MAP_INITIAL;
	if ((rc = mdb_env_set_mapsize(s->env, s->mapsize)) != 0)
		goto fail;
	if ((rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0600)) != 0)
		goto fail;
	{
		MDB_envinfo info;
		if (mdb_env_info(s->env, &info) == 0 && info.me_mapsize > s->mapsize)
			s->mapsize = info.me_mapsize;
	}
	int dead = 0;
	mdb_reader_check(s->env, &dead);
	if ((rc = mdb_txn_begin(s->env, NULL, 0, &txn)) != 0)
		goto fail;
	for (int i = 0; i < SRV_DB_COUNT; i++) {
		MDB_dbi d;
		if ((rc = mdb_dbi_open(txn, srv_db_names[i], MDB_CREATE, &d)) != 0)
			goto fail;
		*dbs[i] = d;
	}
	if ((rc = mdb_txn_commit(txn)) != 0) {
		txn = NULL;
		goto fail;
	}
	return 0;
fail:
	if (txn)
		mdb_txn_abort(txn);
	lc_errf(err, errlen, "store %s: %s", dir, mdb_strerror(rc));
	if (s->env)
		mdb_env_close(s->env);
	s->env = NULL;
	unlock_dir(s);
	return -1;
}

void srv_store_close(struct srv *s)
{
	if (s->pg) {
		srv_pg_close(s);
		pthread_cond_destroy(&s->pub_cv);
		pthread_mutex_destroy(&s->pub_mu);
		return;
	}
	if (!s->env)
		return;
	mdb_env_sync(s->env, 1);
	mdb_env_close(s->env);
	s->env = NULL;
	unlock_dir(s);
	pthread_rwlock_destroy(&s->maplock);
	pthread_cond_destroy(&s->pub_cv);
	pthread_mutex_destroy(&s->pub_mu);
}

const char *srv_strerror(int rc)
{
	if (rc == SRV_REFUSED)
		return "refused";
	if (rc == SRV_E_PG)
		return srv_pg_strerror();
	return rc > 0 ? strerror(rc) : mdb_strerror(rc);   /* mdb_strerror knows errno too, but not every one */
}

/* set by srv_publish on this thread, read by run() once the transaction is over */
static __thread bool published;

void srv_note_publish(void) { published = true; }
bool srv_take_published(void)
{
	bool p = published;
	published = false;
	return p;
}

void srv_publish_done(struct srv *s)
{
	pthread_mutex_lock(&s->pub_mu);
	s->pub_gen++;
	pthread_cond_broadcast(&s->pub_cv);
	pthread_mutex_unlock(&s->pub_mu);
}

static int grow(struct srv *s, size_t seen)
{
	int rc = 0;
	pthread_rwlock_wrlock(&s->maplock);
	if (s->mapsize == seen) {   /* another thread may have grown it already */
		size_t want = s->mapsize * 2;
		rc = mdb_env_set_mapsize(s->env, want);
		if (rc == 0) {
			s->mapsize = want;
			lc_log(LC_LOG_INFO, "llmcap-server: store map grown to %zu MiB", want >> 20);
		}
	}
	pthread_rwlock_unlock(&s->maplock);
	return rc;
}

/* Grow before the map is nearly full: a put that fails with MDB_MAP_FULL
 * deep inside a transaction poisons it (commit then says MDB_BAD_TXN), so
 * waiting for the error is only the fallback. */
static void grow_early(struct srv *s)
{
	MDB_envinfo info;
	MDB_stat st;
	size_t seen;
	pthread_rwlock_rdlock(&s->maplock);
	seen = s->mapsize;
	bool full = mdb_env_info(s->env, &info) == 0 && mdb_env_stat(s->env, &st) == 0 &&
		    (size_t)(info.me_last_pgno + 1) * st.ms_psize > seen / 4 * 3;
	pthread_rwlock_unlock(&s->maplock);
	if (full)
		grow(s, seen);
}

static int run(struct srv *s, srv_txn_fn fn, void *ctx, unsigned flags)
{
	for (int attempt = 0; attempt < 8; attempt++) {
		MDB_txn *txn;
		int rc;
		size_t seen;

		if (!(flags & MDB_RDONLY))
			grow_early(s);
		pthread_rwlock_rdlock(&s->maplock);
		seen = s->mapsize;
		rc = mdb_txn_begin(s->env, NULL, flags, &txn);
		if (rc == MDB_MAP_RESIZED) {
			/* another process grew it: adopt the new size */
			pthread_rwlock_unlock(&s->maplock);
			pthread_rwlock_wrlock(&s->maplock);
			mdb_env_set_mapsize(s->env, 0);
			MDB_envinfo info;
			if (mdb_env_info(s->env, &info) == 0)
				s->mapsize = info.me_mapsize;
			pthread_rwlock_unlock(&s->maplock);
			continue;
		}
		if (rc != 0) {
			pthread_rwlock_unlock(&s->maplock);
			return rc;
		}
		published = false;
		srv_txn t = {.s = s, .mdb = txn, .rdonly = (flags & MDB_RDONLY) != 0};
		rc = fn(s, &t, ctx);
		if (rc == SRV_COMMIT) {
			if (flags & MDB_RDONLY) {
				mdb_txn_abort(txn);
			} else {
				rc = mdb_txn_commit(txn);
			}
		} else {
			mdb_txn_abort(txn);
		}
		pthread_rwlock_unlock(&s->maplock);
		if (rc == SRV_COMMIT && published)
			srv_publish_done(s);
		published = false;
		if (rc == MDB_MAP_FULL && !(flags & MDB_RDONLY)) {
			if (grow(s, seen) != 0)
				return rc;
			continue;
		}
		return rc;
	}
	return MDB_MAP_FULL;
}

int srv_write(struct srv *s, srv_txn_fn fn, void *ctx)
{
	return s->pg ? srv_pg_run(s, fn, ctx, false) : run(s, fn, ctx, 0);
}

int srv_read(struct srv *s, srv_txn_fn fn, void *ctx)
{
	return s->pg ? srv_pg_run(s, fn, ctx, true) : run(s, fn, ctx, MDB_RDONLY);
}

/* ---- the table primitives ---- */

int srv_kv_get(srv_txn *t, srv_dbi dbi, MDB_val *k, MDB_val *v)
{
	return t->mdb ? mdb_get(t->mdb, dbi, k, v) : srv_pg_get(t, dbi, k, v);
}

int srv_kv_put(srv_txn *t, srv_dbi dbi, MDB_val *k, MDB_val *v, unsigned flags)
{
	return t->mdb ? mdb_put(t->mdb, dbi, k, v, flags) : srv_pg_put(t, dbi, k, v);
}

int srv_kv_del(srv_txn *t, srv_dbi dbi, MDB_val *k, MDB_val *v)
{
	return t->mdb ? mdb_del(t->mdb, dbi, k, v) : srv_pg_del(t, dbi, k);
}

int srv_kv_stat(srv_txn *t, srv_dbi dbi, MDB_stat *st)
{
	memset(st, 0, sizeof *st);
	return t->mdb ? mdb_stat(t->mdb, dbi, st) : srv_pg_count(t, dbi, &st->ms_entries);
}

int srv_cursor_open(srv_txn *t, srv_dbi dbi, srv_cursor **out)
{
	srv_cursor *c = calloc(1, sizeof *c);
	int rc = 0;
	if (!c)
		return ENOMEM;
	c->t = t;
	c->dbi = dbi;
	if (t->mdb && (rc = mdb_cursor_open(t->mdb, dbi, &c->mc)) != 0) {
		free(c);
		return rc;
	}
	*out = c;
	return 0;
}

int srv_cursor_get(srv_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op)
{
	return c->mc ? mdb_cursor_get(c->mc, k, v, op) : srv_pg_cursor_get(c, k, v, op);
}

int srv_cursor_put(srv_cursor *c, MDB_val *k, MDB_val *v, unsigned flags)
{
	return c->mc ? mdb_cursor_put(c->mc, k, v, flags) : srv_pg_put(c->t, c->dbi, k, v);
}

int srv_cursor_del(srv_cursor *c, unsigned flags)
{
	MDB_val k, v;
	int rc;
	if (c->mc)
		return mdb_cursor_del(c->mc, flags);
	if ((rc = srv_pg_cursor_get(c, &k, &v, MDB_GET_CURRENT)) != 0)
		return rc;
	return srv_pg_del(c->t, c->dbi, &k);
}

void srv_cursor_close(srv_cursor *c)
{
	if (!c)
		return;
	if (c->mc)
		mdb_cursor_close(c->mc);
	else
		srv_pg_cursor_close(c);
	free(c);
}

bool srv_store_notifier_turn(struct srv *s) { return !s->pg || srv_pg_notifier_turn(s); }

int srv_get_raw(srv_txn *txn, srv_dbi dbi, const char *key, MDB_val *out)
{
	MDB_val k = {strlen(key), (void *)key};
	return srv_kv_get(txn, dbi, &k, out);
}

int srv_put_raw(srv_txn *txn, srv_dbi dbi, const char *key, const void *p, size_t n)
{
	MDB_val k = {strlen(key), (void *)key}, v = {n, (void *)p};
	return srv_kv_put(txn, dbi, &k, &v, 0);
}

int srv_del(srv_txn *txn, srv_dbi dbi, const char *key)
{
	MDB_val k = {strlen(key), (void *)key};
	return srv_kv_del(txn, dbi, &k, NULL);
}

json_t *srv_get_json(srv_txn *txn, srv_dbi dbi, const char *key)
{
	MDB_val v;
	if (srv_get_raw(txn, dbi, key, &v) != 0)
		return NULL;
	return json_loadb(v.mv_data, v.mv_size, JSON_DECODE_ANY, NULL);
}

int srv_put_json(srv_txn *txn, srv_dbi dbi, const char *key, json_t *j)
{
	char *txt = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
	int rc;
	if (!txt)
		return ENOMEM;
	rc = srv_put_raw(txn, dbi, key, txt, strlen(txt));
	free(txt);
	return rc;
}

int64_t srv_get_int(srv_txn *txn, srv_dbi dbi, const char *key, int64_t dflt)
{
	MDB_val v;
	char buf[32];
	if (srv_get_raw(txn, dbi, key, &v) != 0 || v.mv_size == 0 || v.mv_size >= sizeof buf)
		return dflt;
	memcpy(buf, v.mv_data, v.mv_size);
	buf[v.mv_size] = 0;
	return strtoll(buf, NULL, 10);
}

int srv_put_int(srv_txn *txn, srv_dbi dbi, const char *key, int64_t val)
{
	char buf[32];
	int n = snprintf(buf, sizeof buf, "%" PRId64, val);
	return srv_put_raw(txn, dbi, key, buf, (size_t)n);
}
