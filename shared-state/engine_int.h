/* engine_int.h - compiled policy records stored in LMDB, shared by engine*.c.
 * Layouts are private to one build; "cfg" carries LC_REC_FORMAT and a store
 * compiled by another format is refused with a clear message (re-apply).
 */
#ifndef LC_ENGINE_INT_H
#define LC_ENGINE_INT_H

#include <stdint.h>

#include "engine.h"
#include "policy.h"
#include "price.h"
#include "store.h"

#define LC_REC_FORMAT 0x4c430003u
#define LC_MAX_IDENT 8
#define LC__E_NEWER (-1998)  /* the store was compiled by a newer llmcap than this process */

enum lc_scope { LC_SCOPE_KEY = 0, LC_SCOPE_TEAM = 1, LC_SCOPE_ORG = 2, LC_SCOPE_CUSTOMER = 3 };

struct lc_rec_cfg {
	uint32_t format;
	uint8_t unknown_keys_block;
	uint8_t unknown_models_block;
	uint8_t org_period;          /* enum lc_window */
	uint8_t nident;
	int64_t org_cap;             /* micro-USD, -1 unlimited */
	int64_t org_warn;            /* micro-USD, -1 none */
	int64_t cust_budget;         /* micro-USD per month, -1 none */
	int64_t cust_rpm;            /* -1 none */
	int64_t default_max_output;  /* reservation when neither request nor price gives a cap */
	int64_t expires_at;          /* the policy's, so admit needs no extra lookup */
	char ident[LC_MAX_IDENT][124];
};

struct lc_rec_provider {
	uint8_t format;
	char name[64];
};

struct lc_rec_limits {
	int32_t n;
	struct lc_limit l[LC_MAX_LIMITS];
};

struct lc_rec_key {
	char name[64];
	char team[64];
	int64_t expires_at;          /* -1 none */
	uint8_t revoked;
	struct lc_rec_limits lim;
};

struct lc_rec_cust {
	int64_t budget;              /* micro-USD, -1 none, -2 inherit default */
	int64_t rpm;
};

struct lc_rec_counter {
	int64_t used;
	int64_t reserved;
	int64_t remote;              /* other hosts' usage, as last learned from the server */
};

/* counter key: [scope][metric][window][bucket: 8 bytes big endian][id bytes] */
#define LC_CKEY_MAX (11 + 128)
struct lc_ckey {
	uint8_t len;
	unsigned char b[LC_CKEY_MAX];
};

/* tickets live in the counters tree under 0xff + id (counter keys start with a scope 0..3),
 * so admit and settle dirty one B-tree */
#define LC_TICKET_PREFIX 0xff
#define LC_TICKET_MAXC 40
struct lc_rec_ticket_hdr {
	int32_t pid;
	int32_t nc;
	uint64_t pstart;
	int64_t created_ms;
	int64_t est[3];              /* per metric: cost (micro), requests, tokens */
	struct lc_price price;       /* the model's compiled price and the request's tier */
	/* followed by nc x (u8 len, bytes) counter keys */
};

#endif
