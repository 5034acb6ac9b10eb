/* table.c - the shim's global tables (torsocks' design: state keyed by SSL* or fd must be
 * global, threads hand sockets to each other).
 *
 * - lc_fdst[] (defined in shim.c, the hook library): one atomic byte per fd, read without a lock by every libc hook; 0 means
 *   "untracked" and the hook calls the real function at once.
 * - two sharded hash tables (SSL* -> conn, fd -> conn), a mutex per shard; entries are
 *   reference counted so a close() in one thread cannot free a conn another thread uses.
 * - a small ring of TLS ClientHello client_random values -> fd.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conn_impl.h"

#define NSHARD 64
#define NBUCKET 256

struct ent {
	struct ent *next;
	uintptr_t key;
	struct lc_conn *c;
};

/* the mutexes sit together (2 pages): fork() locks and re-initialises them, and every page a
 * fork handler writes is a copy-on-write fault in a VM that may cost microseconds */
static pthread_mutex_t shard_mu[LC_TAB_N][NSHARD];
static struct ent *buckets[LC_TAB_N][NSHARD][NBUCKET];
static size_t shard_n[LC_TAB_N][NSHARD];
static pthread_once_t tabs_once = PTHREAD_ONCE_INIT;

static void tabs_init(void)
{
	int t, i;

	for (t = 0; t < LC_TAB_N; t++)
		for (i = 0; i < NSHARD; i++)
			pthread_mutex_init(&shard_mu[t][i], NULL);
}

static inline uint64_t mix(uintptr_t k)
{
	uint64_t x = (uint64_t)k;

	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	return x;
}

struct shard {
	pthread_mutex_t *mu;
	struct ent **b;
	size_t *n;
};

static inline struct shard shard_of(int tab, uintptr_t key, unsigned *bucket)
{
	uint64_t h = mix(key);
	unsigned i = (unsigned)(h % NSHARD);
	struct shard s = { &shard_mu[tab][i], buckets[tab][i], &shard_n[tab][i] };

	pthread_once(&tabs_once, tabs_init);
	*bucket = (unsigned)(h >> 8) % NBUCKET;
	return s;
}

/* An entry inherited through fork(): its tickets belong to the parent. The child gets a fresh
 * conn for the same socket (same classification, nothing in flight); the old one is dropped
 * without settling (lc_conn_put checks the fork generation). Caller holds the shard lock. */
static void refresh_locked(struct ent *e)
{
	struct lc_conn *old = e->c, *n;

	if (old->forkgen == atomic_load(&lc_pl_forkgen))
		return;
	n = lc_conn_new(old->fd, old->tls);
	if (!n)
		return;
	n->cls = old->cls;
	n->t = old->t;
	n->alpn_done = old->alpn_done;
	e->c = n;
	lc_conn_put(old);
}

struct lc_conn *lc_tab_get(int tab, uintptr_t key)
{
	unsigned b;
	struct shard s = shard_of(tab, key, &b);
	struct ent *e;
	struct lc_conn *c = NULL;

	pthread_mutex_lock(s.mu);
	for (e = s.b[b]; e; e = e->next)
		if (e->key == key) {
			refresh_locked(e);
			c = e->c;
			lc_conn_ref(c);
			break;
		}
	pthread_mutex_unlock(s.mu);
	return c;
}

struct lc_conn *lc_tab_put(int tab, uintptr_t key, struct lc_conn *c)
{
	unsigned b;
	struct shard s = shard_of(tab, key, &b);
	struct ent *e, *ne;

	ne = malloc(sizeof(*ne));
	pthread_mutex_lock(s.mu);
	for (e = s.b[b]; e; e = e->next)
		if (e->key == key) {
			refresh_locked(e);
			lc_conn_ref(e->c);
			c = e->c;
			pthread_mutex_unlock(s.mu);
			free(ne);
			return c;
		}
	if (!ne) {
		pthread_mutex_unlock(s.mu);
		return NULL;
	}
	ne->key = key;
	ne->c = c;
	ne->next = s.b[b];
	s.b[b] = ne;
	(*s.n)++;
	lc_conn_ref(c);    /* the table's */
	lc_conn_ref(c);    /* the caller's */
	pthread_mutex_unlock(s.mu);
	return c;
}

struct lc_conn *lc_tab_take(int tab, uintptr_t key)
{
	unsigned b;
	struct shard s = shard_of(tab, key, &b);
	struct ent **pp, *e;
	struct lc_conn *c = NULL;

	pthread_mutex_lock(s.mu);
	for (pp = &s.b[b]; (e = *pp); pp = &e->next)
		if (e->key == key) {
			*pp = e->next;
			c = e->c;
			(*s.n)--;
			free(e);
			break;
		}
	pthread_mutex_unlock(s.mu);
	return c;
}

size_t lc_tab_count(int tab)
{
	size_t n = 0;
	int i;

	pthread_once(&tabs_once, tabs_init);
	for (i = 0; i < NSHARD; i++) {
		pthread_mutex_lock(&shard_mu[tab][i]);
		n += shard_n[tab][i];
		pthread_mutex_unlock(&shard_mu[tab][i]);
	}
	return n;
}

/* ---- client_random ring ---- */

#define NCR 512
struct cr_ent {
	unsigned char cr[32];
	int fd;
};
static struct cr_ent crs[NCR];
static unsigned cr_next;
static pthread_mutex_t cr_mu = PTHREAD_MUTEX_INITIALIZER;

void lc_cr_record(int fd, const unsigned char cr[32])
{
	unsigned i;

	pthread_mutex_lock(&cr_mu);
	/* one entry per fd: a reused fd number replaces its old entry */
	for (i = 0; i < NCR; i++)
		if (crs[i].fd == fd + 1)
			crs[i].fd = 0;
	i = cr_next++ % NCR;
	memcpy(crs[i].cr, cr, 32);
	crs[i].fd = fd + 1;    /* 0 = empty slot */
	pthread_mutex_unlock(&cr_mu);
}

int lc_cr_lookup(const unsigned char cr[32])
{
	int fd = -1;
	unsigned i;

	pthread_mutex_lock(&cr_mu);
	for (i = 0; i < NCR; i++)
		if (crs[i].fd && memcmp(crs[i].cr, cr, 32) == 0) {
			fd = crs[i].fd - 1;
			break;
		}
	pthread_mutex_unlock(&cr_mu);
	return fd;
}

void lc_cr_forget_fd(int fd)
{
	unsigned i;

	pthread_mutex_lock(&cr_mu);
	for (i = 0; i < NCR; i++)
		if (crs[i].fd == fd + 1)
			crs[i].fd = 0;
	pthread_mutex_unlock(&cr_mu);
}

/* ---- fork ---- */

void lc_tab_atfork_prepare(void)
{
	int t, i;

	pthread_once(&tabs_once, tabs_init);
	pthread_mutex_lock(&cr_mu);
	for (t = 0; t < LC_TAB_N; t++)
		for (i = 0; i < NSHARD; i++)
			pthread_mutex_lock(&shard_mu[t][i]);
}

void lc_tab_atfork_parent(void)
{
	int t, i;

	for (t = LC_TAB_N - 1; t >= 0; t--)
		for (i = NSHARD - 1; i >= 0; i--)
			pthread_mutex_unlock(&shard_mu[t][i]);
	pthread_mutex_unlock(&cr_mu);
}

/* The child has one thread and the parent's tables, consistent (prepare held every lock). Only
 * the locks are re-initialised here; inherited entries are replaced lazily on first use
 * (refresh_locked), so a fork costs a few pages whatever the parent had open. */
void lc_tab_atfork_child(void)
{
	int t, i;

	for (t = 0; t < LC_TAB_N; t++)
		for (i = 0; i < NSHARD; i++)
			pthread_mutex_init(&shard_mu[t][i], NULL);
	pthread_mutex_init(&cr_mu, NULL);
}
