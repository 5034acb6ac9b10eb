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

#include "policy.h"
#include "sign.h"

#define SRV_BODY_MAX (4 * 1024 * 1024)        /* admin request bodies above this get 413 */
#define SRV_REPORT_COUNTERS_MAX 65536           /* counters in one usage report (more: 413) */
/* POST /v1/usage: the largest report the format allows, 65,536 counters of at most 256 bytes each (the
 * longest compact counter: a 128-character id, "provider", "cached_input_tokens", "lifetime", a 12-digit
 * bucket and a 16-digit used is 253 bytes and a comma); host_id, epoch and seq fit in the slack: 16 MiB */
#define SRV_USAGE_MAX (SRV_REPORT_COUNTERS_MAX * 256)
/* its answer, written as text: every counter of the report (about the report's size) and the current org
 * and team totals; the agent takes up to 64 MiB */
#define SRV_USAGE_ANSWER_MAX (64u << 20)
/* after a request whose body was at least this large, free memory is given back to the system */
#define SRV_TRIM_AFTER (1u << 20)
#define SRV_BODY_MEMORY_DEFAULT (256u << 20)   /* --max-body-memory: request bodies in flight, in all */
#define SRV_ID_MAX LC_NAME_MAX                 /* key/team/customer ids in paths and bodies: the policy's limit */
#define SRV_COUNTER_ID_MAX 128                 /* ids in usage reports (a customer id comes from a request) */
#define SRV_PATH_MAX 1024                      /* longer request paths get 404 */
#define SRV_MAX_TOKENS 64                      /* named admin tokens */
#define SRV_DEFAULT_LIFETIME_S (30 * 86400)    /* policy lifetime unless settings say otherwise */

/* The server's store: key-value tables ("dbs") behind one small interface, on LMDB (--data DIR,
 * the default) or on PostgreSQL (--db postgresql://..., several servers sharing one database).
 * Keys and values are bytes (MDB_val); keys sort bytewise on both. store.c has the LMDB side and
 * the dispatch, store_pg.c PostgreSQL's. */
typedef struct srv_txn srv_txn;        /* one transaction, read or write */
typedef struct srv_cursor srv_cursor;  /* a walk over one table in key order */
typedef unsigned int srv_dbi;          /* a table */
enum srv_db {
	SRV_DB_META, SRV_DB_KEYS, SRV_DB_TEAMS, SRV_DB_CUST, SRV_DB_INVITES, SRV_DB_HOSTS, SRV_DB_TOTALS,
	SRV_DB_OUTBOX, SRV_DB_FIRED, SRV_DB_AUDIT, SRV_DB_HOSTCREDS, SRV_DB_ENROLL, SRV_DB_COUNT
};
extern const char *const srv_db_names[SRV_DB_COUNT];
struct srv_pg;                         /* store_pg.c */

struct srv {
	struct srv_pg *pg;   /* PostgreSQL store (--db); NULL: LMDB */
	MDB_env *env;
	int lock_fd;         /* DIR/server.lock, flock()ed while open */
	srv_dbi db_meta;     /* "version", "envelope", "etag", "issued_at", "org", "settings", ... */
	srv_dbi db_keys;     /* key id -> key object (policy shape, no "id") */
	srv_dbi db_teams;    /* team id -> team object */
	srv_dbi db_cust;     /* customer id -> override object */
	srv_dbi db_invites;  /* hex(sha256(code)) -> invite */
	srv_dbi db_hosts;    /* host_id|epoch -> {"seq": N, "counters": {ckey: used}} */
	srv_dbi db_totals;   /* ckey -> int64 (decimal text): sum over every host record */
	srv_dbi db_outbox;   /* u64 big-endian seq -> pending webhook delivery */
	srv_dbi db_fired;    /* dedup key -> "1": an event fires once per limit per window */
	srv_dbi db_audit;    /* u64 big-endian seq -> {"time","token","call","status","before","after"} */
	srv_dbi db_hostcreds; /* host id -> {"hash": hex sha256(secret), "enrolled_at", "label"?, "removed_at"?} */
	srv_dbi db_enroll;   /* hex(sha256(enrolment code)) -> {"created_at","expires_at","used_at"?,"host_id"?} */
	pthread_rwlock_t maplock;  /* shared by every txn, exclusive to grow the map */
	size_t mapsize;
	size_t map_initial;        /* 0: 64 MiB (tests set it small to exercise growth) */

	struct lc_signkey key;
	struct srv_token {
		char name[64];
		enum srv_role { SRV_ROLE_READ = 1, SRV_ROLE_ADMIN = 2 } role;
		unsigned char hash[32];   /* sha256 of the token */
	} tokens[SRV_MAX_TOKENS];    /* named admin tokens (auth.c) */
	int ntokens;

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

	/* policy publications: pub_gen moves after every committed publish */
	pthread_mutex_t pub_mu;
	pthread_cond_t pub_cv;
	uint64_t pub_gen;
	bool pub_stopping;        /* shutting down: long-polls answer at once */
};

/* ---- store.c ---- */
/* where: a directory (LMDB) or a postgresql:// or postgres:// URL (PostgreSQL) */
int srv_store_open(struct srv *s, const char *where, char *err, size_t errlen);
bool srv_store_is_url(const char *where);
void srv_store_close(struct srv *s);
/* Run fn in a write (or read) transaction. fn returns SRV_COMMIT (0) to commit,
 * SRV_REFUSED to abort because it refused the request (it has set the answer),
 * or the LMDB code / errno that failed; anything but SRV_COMMIT aborts and is
 * returned, and so is a failed commit's code (LMDB's, or a positive errno such
 * as ENOSPC or EIO). MDB_MAP_FULL (from fn or commit) grows the map and runs fn
 * again, so fn must be safe to repeat. SRV_REFUSED lies outside both the LMDB
 * range and errno's, so no store error can pass for a refusal. */
enum { SRV_COMMIT = 0, SRV_REFUSED = -0x7fff0001 };
typedef int (*srv_txn_fn)(struct srv *s, srv_txn *txn, void *ctx);
int srv_write(struct srv *s, srv_txn_fn fn, void *ctx);
int srv_read(struct srv *s, srv_txn_fn fn, void *ctx);
/* A store failure as text (LMDB's message, PostgreSQL's, or strerror for an errno). */
const char *srv_strerror(int rc);
enum { SRV_E_PG = -0x7fff0010 };   /* a PostgreSQL statement failed (srv_strerror has its message) */
/* The table primitives, with LMDB's meaning on both stores: 0, MDB_NOTFOUND, or a failure. A value
 * read stays valid until the transaction ends. */
int srv_kv_get(srv_txn *txn, srv_dbi dbi, MDB_val *k, MDB_val *v);
int srv_kv_put(srv_txn *txn, srv_dbi dbi, MDB_val *k, MDB_val *v, unsigned flags);
int srv_kv_del(srv_txn *txn, srv_dbi dbi, MDB_val *k, MDB_val *v /* NULL */);
int srv_kv_stat(srv_txn *txn, srv_dbi dbi, MDB_stat *st);   /* ms_entries only */
int srv_cursor_open(srv_txn *txn, srv_dbi dbi, srv_cursor **c);
/* op: MDB_FIRST, MDB_LAST, MDB_NEXT, MDB_PREV, MDB_SET_RANGE (k in: the first key >= it) */
int srv_cursor_get(srv_cursor *c, MDB_val *k, MDB_val *v, MDB_cursor_op op);
int srv_cursor_put(srv_cursor *c, MDB_val *k, MDB_val *v, unsigned flags);
int srv_cursor_del(srv_cursor *c, unsigned flags);   /* the entry the cursor is on */
void srv_cursor_close(srv_cursor *c);
/* Several servers on one store: true when this process may deliver the outbox now (always on
 * LMDB; on PostgreSQL the instance holding an advisory lock). */
bool srv_store_notifier_turn(struct srv *s);
/* Called by srv_publish inside a write transaction: once that transaction
 * commits, pub_gen moves and pub_cv is broadcast (long-polls answer). */
void srv_note_publish(void);
bool srv_take_published(void);              /* store_pg.c: did this transaction publish? (resets) */
void srv_publish_done(struct srv *s);       /* pub_gen moves, long-polls wake */
/* value helpers; keys are NUL-terminated strings */
json_t *srv_get_json(srv_txn *txn, srv_dbi dbi, const char *key);   /* new ref or NULL */
int srv_put_json(srv_txn *txn, srv_dbi dbi, const char *key, json_t *v);
int srv_get_raw(srv_txn *txn, srv_dbi dbi, const char *key, MDB_val *out); /* 0, MDB_NOTFOUND */
int srv_put_raw(srv_txn *txn, srv_dbi dbi, const char *key, const void *p, size_t n);
int srv_del(srv_txn *txn, srv_dbi dbi, const char *key);   /* 0 or MDB_NOTFOUND */
int64_t srv_get_int(srv_txn *txn, srv_dbi dbi, const char *key, int64_t dflt);
int srv_put_int(srv_txn *txn, srv_dbi dbi, const char *key, int64_t v);

/* ---- HTTP API: requests and answers ---- */
struct srv_req {
	const char *method;
	const char *path;            /* decoded path, no query string */
	const char *authorization;   /* header or NULL */
	const char *if_none_match;   /* header or NULL */
	const char *body;
	size_t body_len;
	const char *const *args;     /* query arguments: name, value, name, value, ..., NULL (or NULL) */
	/* any other request header (or NULL: none); hcls is its first argument */
	const char *(*header)(void *hcls, const char *name);
	void *hcls;
	const char *peer;            /* client address as text, or NULL */
	int64_t start_ms;            /* when the request arrived (0: now); stays put across retries */
};
const char *srv_req_arg(const struct srv_req *rq, const char *name);      /* NULL when absent */
const char *srv_req_header(const struct srv_req *rq, const char *name);   /* NULL when absent */

struct srv_resp {
	int status;          /* 0 with retry_at_ms: no answer yet (see below) */
	char *body;          /* malloc'd, may be NULL (304) */
	size_t body_len;
	const char *content_type;   /* static string; NULL: application/json when there is a body */
	char etag[96];       /* "" when none */
	char allow[64];      /* for 405 */
	bool www_auth;       /* add WWW-Authenticate on 401 */
	char set_cookie[192];   /* a Set-Cookie header (the dashboard's session), "" when none */
	int retry_after_s;   /* > 0: a Retry-After header */
	/* a long-poll with nothing to say yet: ask again (same srv_req, same start_ms)
	 * when pub_gen moves or at this time, whichever is first */
	int64_t retry_at_ms;
};
void srv_resp_free(struct srv_resp *rs);
void srv_resp_error(struct srv_resp *rs, int status, const char *type, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
void srv_resp_json(struct srv_resp *rs, int status, json_t *v /* stolen */);
/* A store failure as the answer: 503 naming the cause; nothing was changed. */
void srv_resp_store_error(struct srv_resp *rs, int rc);

/* ---- router (router.c): one table of (method, path pattern, handler) ---- */
/* Who may call a route. */
enum srv_auth {
	SRV_AUTH_NONE,    /* anyone (the handler may check a secret in the path or body itself) */
	SRV_AUTH_HOST,    /* an enrolled host's own credential (srv_host_auth): c->host is its id */
	SRV_AUTH_READ,    /* an admin token; reads only */
	SRV_AUTH_ADMIN,   /* an admin token allowed to change things */
};
#define SRV_MAX_PARAMS 3
struct srv_call;
typedef void (*srv_handler_fn)(struct srv_call *c);
struct srv_route {
	const char *method;     /* "GET" (also answers HEAD), "POST", "PUT", "PATCH", "DELETE" */
	/* literal segments and captures: "{id}" is a key/team/customer id (srv_id_ok, else 400),
	 * any other "{name}" one segment of A-Z a-z 0-9 . _ - (at most 128) */
	const char *pattern;
	enum srv_auth auth;
	size_t body_max;        /* 0: no body (a body gets 413) */
	bool json;              /* the body must be a JSON object: c->body */
	srv_handler_fn fn;
	const char *data;       /* the handler's datum, e.g. the policy piece it serves */
};
/* A route and its captures, found from the request line alone: the glue looks
 * it up (and checks the token) before reading any body. */
struct srv_match {
	const struct srv_route *route;
	const char *param[SRV_MAX_PARAMS];   /* captures in pattern order, pointing into buf */
	char buf[SRV_PATH_MAX];
	char host[SRV_ID_MAX + 1];           /* SRV_AUTH_HOST: the host the credential names */
};
struct srv_call {
	struct srv *s;
	const struct srv_req *rq;
	struct srv_resp *rs;
	const struct srv_route *route;
	const char *const *param;   /* = match->param */
	const char *id;             /* the {id} capture, or NULL */
	json_t *body;               /* route->json: the parsed body (borrowed) */
	const struct srv_token *token;   /* the admin token that called, or NULL */
	const char *host;                /* SRV_AUTH_HOST: the calling host's id */
};
/* 0 and m filled; -1: rs holds the 404/405/400 */
int srv_route_match(const char *method, const char *path, struct srv_match *m, struct srv_resp *rs);
/* The caller's token allows the route; false: rs holds the 401 */
bool srv_route_auth(struct srv *s, struct srv_match *m, const struct srv_req *rq, struct srv_resp *rs);
/* Run a matched, authorised route on the whole request. */
void srv_route_run(struct srv *s, const struct srv_match *m, const struct srv_req *rq, struct srv_resp *rs);
/* All three: the HTTP API as a function of a request (unit tests drive this). */
void srv_handle(struct srv *s, const struct srv_req *rq, struct srv_resp *rs);
/* Decode %XX in place (MHD's unescape callback); an escape of a control byte or
 * a malformed one stays as written, so the router refuses it (never a NUL). */
size_t srv_unescape(char *s);
extern const struct srv_route srv_routes[];   /* ends with {NULL} */

/* ---- tokens (auth.c) ---- */
/* Add a named admin token (whitespace around it ignored; at least 16 characters). 0, or -1 with err. */
int srv_add_token(struct srv *s, const char *name, enum srv_role role, const char *token, size_t len, char *err,
		  size_t errlen);
/* The --admin-token-file token: named "admin", role admin. 0 or -1 (too short). */
int srv_set_admin_token(struct srv *s, const char *token, size_t len);
/* Lines "NAME ROLE TOKEN" (role admin or read; # comments). 0, or -1 with err naming the line. */
int srv_load_tokens(struct srv *s, const char *text, size_t len, char *err, size_t errlen);
/* The admin token the Authorization header carries, or NULL (compared in constant time). */
const struct srv_token *srv_token_of(const struct srv *s, const char *authorization);
bool srv_admin_ok(const struct srv *s, const char *authorization);   /* a token with role admin */

/* ---- enrolled hosts (hosts.c) ---- */
/* The host whose credential ("Bearer <host id>.<secret>") the header carries, into host
 * (SRV_ID_MAX + 1 bytes); false: rs holds the 401 (none, unknown, wrong secret, removed). */
bool srv_host_auth(struct srv *s, const char *authorization, char *host, struct srv_resp *rs);
void srv_h_host_enroll_code(struct srv_call *c);   /* POST /v1/admin/hosts/enroll */
void srv_h_host_enroll(struct srv_call *c);        /* POST /v1/hosts/enroll {code} */
void srv_h_host_list(struct srv_call *c);
void srv_h_host_get(struct srv_call *c);
void srv_h_host_delete(struct srv_call *c);
void srv_h_events_post(struct srv_call *c);        /* POST /v1/events: a host's events, to notify */

/* ---- audit log (audit.c) ---- */
/* What an admin change is about, read before it runs (new ref or NULL). */
json_t *srv_audit_before(struct srv *s, const struct srv_call *c);
/* Record a successful admin change: who, which call, before and after (secrets redacted). */
void srv_audit_record(struct srv *s, const struct srv_call *c, json_t *before /* stolen */);

/* ---- handlers (api.c) ---- */
#define SRV_LONGPOLL_MAX_S 60   /* GET /v1/policy?wait=N: N is capped here */
/* route handlers (routes.c lists them with their paths) */
void srv_h_healthz(struct srv_call *c);
void srv_h_policy(struct srv_call *c);
void srv_h_usage_post(struct srv_call *c);
void srv_h_usage_get(struct srv_call *c);
void srv_h_admin_policy(struct srv_call *c);
void srv_h_obj_list(struct srv_call *c);     /* data: "keys", "teams" */
void srv_h_obj_get(struct srv_call *c);      /* data: "keys", "teams", "customers" */
void srv_h_obj_put(struct srv_call *c);      /* data: "teams", "customers" */
void srv_h_obj_patch(struct srv_call *c);    /* data: "keys", "teams" */
void srv_h_obj_del(struct srv_call *c);      /* data: "teams", "customers" */
void srv_h_key_create(struct srv_call *c);
void srv_h_key_revoke(struct srv_call *c);
void srv_h_piece_get(struct srv_call *c);    /* data: the piece */
void srv_h_piece_put(struct srv_call *c);
void srv_h_invite_create(struct srv_call *c);
void srv_h_invite_list(struct srv_call *c);
void srv_h_invite_revoke(struct srv_call *c);
void srv_h_invite_redeem(struct srv_call *c);
void srv_h_audit(struct srv_call *c);

/* ---- policy document (policy_doc.c) ---- */
/* Build the full policy JSON from the stored pieces (new ref; NULL with err). */
json_t *srv_policy_build(struct srv *s, srv_txn *txn, int64_t version, int64_t now, char *err, size_t errlen);
/* Build, validate (lc_policy_parse), sign and store the next version. 0 ok;
 * SRV_PUB_INVALID: the policy is invalid (err names the field: a 400);
 * SRV_PUB_FAILED: it cannot be signed; other: the store's code. */
enum { SRV_PUB_INVALID = -0x7fff0002, SRV_PUB_FAILED = -0x7fff0003 };
int srv_publish(struct srv *s, srv_txn *txn, char *err, size_t errlen);
/* Publish an initial policy when there is none, or re-sign when the stored
 * envelope is by another key or half its lifetime has passed. */
int srv_policy_maintain(struct srv *s);
int64_t srv_policy_lifetime(struct srv *s, srv_txn *txn);

/* ---- usage (usage.c) ---- */
/* POST /v1/usage: rs gets the org-wide counters. */
void srv_usage_post(struct srv *s, const char *host, const char *body, size_t len, struct srv_resp *rs);
/* GET /v1/usage: org-wide usage against every limit (status --json shape); with by and/or window
 * (?by=key|team|org|customer|model|provider&window=minute|hour|day|week|month|lifetime) the usage
 * report of `llmcap usage --json`, org-wide. */
void srv_usage_get(struct srv *s, const char *by, const char *window, struct srv_resp *rs);
/* Evaluate org and team rules (rules.h) on the summed usage; queue their events once (txn). */
int srv_usage_evaluate(struct srv *s, srv_txn *txn, int64_t now);
/* A rule's summed usage over every host in its current bucket (tokens: input + cached + output). */
struct lc_rule;
int64_t srv_rule_used(srv_txn *txn, struct srv *s, const struct lc_rule *r, int64_t now);
/* Counter key "scope\x1fid\x1fmetric\x1fwindow\x1fbucket". */
int srv_ckey(char *out, size_t outlen, const char *scope, const char *id, const char *metric,
	     const char *window, int64_t bucket);
/* Drop totals of buckets long over and old fired-once markers. */
int srv_prune(struct srv *s);
int64_t srv_total(srv_txn *txn, struct srv *s, const char *scope, const char *id, const char *metric,
		  const char *window, int64_t bucket);

/* A rule by its name ("scope:id:metric:window") from the stored pieces: 0 found (a rule
 * lc_rule_leased() or not), -1 none. */
int srv_rule_find(srv_txn *txn, struct srv *s, const char *name, struct lc_rule *out);
/* One host record's reported usage of rule r in the bucket starting at `bucket`. */
int64_t srv_host_rule_used(srv_txn *txn, struct srv *s, const char *host_key, const struct lc_rule *r, int64_t bucket);

/* ---- leases (lease.c): slices of shared limits for hosts ---- */
#define SRV_LEASE_TTL_DEFAULT 30   /* seconds; settings "lease_ttl_seconds" */
#define SRV_LEASE_TTL_MAX 3600
#define SRV_LEASES_MAX (1024 * 1024)   /* POST /v1/leases body cap */
/* leases are on unless the settings say "leases": false */
bool srv_leases_on(const json_t *settings);
void srv_h_leases_post(struct srv_call *c);
void srv_h_leases_get(struct srv_call *c);
/* Drop lease records of windows that are over. */
int srv_leases_prune(struct srv *s);

/* ---- notifications (notify.c) ---- */
/* Queue an event for every webhook that wants it; dedup_key (may be NULL)
 * makes it fire once. Returns 0 (also when deduplicated). */
int srv_event_queue(struct srv *s, srv_txn *txn, const char *event, json_t *data /* stolen */,
		    const char *dedup_key);
/* The same for an event that happened on a host (POST /v1/events): its own id and time, "source":
 * "host" and its "host_id" in the body. */
int srv_event_queue_from(struct srv *s, srv_txn *txn, const char *id, const char *event, const char *created_at,
			 const char *host, json_t *data /* stolen */, const char *dedup_key);
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
