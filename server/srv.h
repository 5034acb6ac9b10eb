/* srv.h - llmcap-server internals: the embedded LMDB store, the policy
 * document built from its pieces, the HTTP API as a pure function of a
 * request (so unit tests drive it without sockets), usage ingestion and the
 * webhook outbox.
 *
 * main.c is only the libmicrohttpd glue and the command line.
 */
#ifndef LC_SRV_H
#define LC_SRV_H

#include <jansson.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sign.h"

#define SRV_BODY_MAX (4 * 1024 * 1024)        /* admin request bodies above this get 413 */
#define SRV_USAGE_MAX (64 * 1024 * 1024)      /* POST /v1/usage: a large host reports many counters */
#define SRV_ID_MAX 128                         /* key/team/customer ids in paths and bodies */
#define SRV_DEFAULT_LIFETIME_S (30 * 86400)    /* policy lifetime unless settings say otherwise */

struct srv {
	MDB_env *env;
	MDB_dbi db_meta;     /* "version", "envelope", "etag", "issued_at", "org", "settings", ... */
	MDB_dbi db_keys;     /* key id -> key object (policy shape, no "id") */
	MDB_dbi db_teams;    /* team id -> team object */
	MDB_dbi db_cust;     /* customer id -> override object */
	MDB_dbi db_invites;  /* hex(sha256(code)) -> invite */
	MDB_dbi db_hosts;    /* host_id|epoch -> {"seq": N, "counters": {ckey: used}} */
	MDB_dbi db_totals;   /* ckey -> int64 (decimal text): sum over every host record */
	MDB_dbi db_outbox;   /* u64 big-endian seq -> pending webhook delivery */
	MDB_dbi db_fired;    /* dedup key -> "1": an event fires once per limit per window */
	pthread_rwlock_t maplock;  /* shared by every txn, exclusive to grow the map */
	size_t mapsize;
	size_t map_initial;        /* 0: 64 MiB (tests set it small to exercise growth) */

	struct lc_signkey key;
	unsigned char admin_hash[32];   /* sha256 of the admin token */
	unsigned char host_hash[32];    /* sha256 of the host token (--host-token-file); zero: none required */

	/* notifier thread */
	pthread_t notifier;
	bool notifier_running;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	bool kick;
	int64_t backoff_base_ms;  /* first retry delay (doubles per attempt) */
	int64_t backoff_max_ms;
	int64_t give_up_s;        /* drop an undeliverable event after this long */
};

/* ---- store.c ---- */
int srv_store_open(struct srv *s, const char *dir, char *err, size_t errlen);
void srv_store_close(struct srv *s);
/* Run fn in a write (or read) transaction. fn returns 0 to commit; anything
 * else aborts and is returned. MDB_MAP_FULL (from fn or commit) grows the map
 * and runs fn again, so fn must be safe to repeat. */
typedef int (*srv_txn_fn)(struct srv *s, MDB_txn *txn, void *ctx);
int srv_write(struct srv *s, srv_txn_fn fn, void *ctx);
int srv_read(struct srv *s, srv_txn_fn fn, void *ctx);
/* value helpers; keys are NUL-terminated strings */
json_t *srv_get_json(MDB_txn *txn, MDB_dbi dbi, const char *key);   /* new ref or NULL */
int srv_put_json(MDB_txn *txn, MDB_dbi dbi, const char *key, json_t *v);
int srv_get_raw(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *out); /* 0, MDB_NOTFOUND */
int srv_put_raw(MDB_txn *txn, MDB_dbi dbi, const char *key, const void *p, size_t n);
int srv_del(MDB_txn *txn, MDB_dbi dbi, const char *key);   /* 0 or MDB_NOTFOUND */
int64_t srv_get_int(MDB_txn *txn, MDB_dbi dbi, const char *key, int64_t dflt);
int srv_put_int(MDB_txn *txn, MDB_dbi dbi, const char *key, int64_t v);

/* ---- HTTP API (api.c) ---- */
struct srv_req {
	const char *method;
	const char *path;            /* decoded path, no query string */
	const char *authorization;   /* header or NULL */
	const char *if_none_match;   /* header or NULL */
	const char *body;
	size_t body_len;
};
struct srv_resp {
	int status;
	char *body;          /* malloc'd, may be NULL (304) */
	size_t body_len;
	char etag[96];       /* "" when none */
	char allow[64];      /* for 405 */
	bool www_auth;       /* add WWW-Authenticate on 401 */
};
void srv_handle(struct srv *s, const struct srv_req *rq, struct srv_resp *rs);
void srv_resp_free(struct srv_resp *rs);
void srv_resp_error(struct srv_resp *rs, int status, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void srv_resp_json(struct srv_resp *rs, int status, json_t *v /* stolen */);
int srv_set_admin_token(struct srv *s, const char *token, size_t len);
bool srv_admin_ok(const struct srv *s, const char *authorization);
int srv_set_host_token(struct srv *s, const char *token, size_t len);
/* POST /v1/usage: true when no host token is configured, or the bearer is it (or the admin token). */
bool srv_host_ok(const struct srv *s, const char *authorization);

/* ---- policy document (policy_doc.c) ---- */
/* Build the full policy JSON from the stored pieces (new ref; NULL with err). */
json_t *srv_policy_build(struct srv *s, MDB_txn *txn, int64_t version, int64_t now, char *err, size_t errlen);
/* Build, validate (lc_policy_parse), sign and store the next version. 0 ok;
 * -1: the policy is invalid (err names the field: a 400); other: store error. */
int srv_publish(struct srv *s, MDB_txn *txn, char *err, size_t errlen);
/* Publish an initial policy when there is none, or re-sign when the stored
 * envelope is by another key or half its lifetime has passed. */
int srv_policy_maintain(struct srv *s);
int64_t srv_policy_lifetime(struct srv *s, MDB_txn *txn);

/* ---- usage (usage.c) ---- */
/* POST /v1/usage: rs gets the org-wide counters. */
void srv_usage_post(struct srv *s, const char *body, size_t len, struct srv_resp *rs);
/* GET /v1/usage: org-wide usage against every limit (status --json shape). */
void srv_usage_get(struct srv *s, struct srv_resp *rs);
/* Evaluate org and team limits on the summed usage; queue events (txn). */
int srv_usage_evaluate(struct srv *s, MDB_txn *txn, int64_t now);
/* Counter key "scope\x1fid\x1fmetric\x1fwindow\x1fbucket". */
int srv_ckey(char *out, size_t outlen, const char *scope, const char *id, const char *metric,
	     const char *window, int64_t bucket);
/* Drop totals of buckets long over and old fired-once markers. */
int srv_prune(struct srv *s);
int64_t srv_total(MDB_txn *txn, struct srv *s, const char *scope, const char *id, const char *metric,
		  const char *window, int64_t bucket);

/* ---- notifications (notify.c) ---- */
/* Queue an event for every webhook that wants it; dedup_key (may be NULL)
 * makes it fire once. Returns 0 (also when deduplicated). */
int srv_event_queue(struct srv *s, MDB_txn *txn, const char *event, json_t *data /* stolen */,
		    const char *dedup_key);
int srv_notifier_start(struct srv *s);
void srv_notifier_stop(struct srv *s);
void srv_notifier_kick(struct srv *s);
/* One delivery pass (also used by unit tests): deliver every due entry. Returns
 * the number delivered; *next_due_ms gets the earliest pending retry (or 0). */
int srv_deliver_due(struct srv *s, int64_t *next_due_ms);
/* x-llmcap-signature value for body at time t. out >= 96 bytes. */

/* ---- misc ---- */
bool srv_id_ok(const char *id);
void srv_random_hex(char *out, size_t nbytes);   /* out: 2*nbytes+1 */

#endif
