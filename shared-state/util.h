/* util.h - small shared helpers: capped buffers, UTC time, money, hashing, logging.
 *
 * Internal to llmcap (never installed). Every module links this.
 */
#ifndef LC_UTIL_H
#define LC_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LC_HIDDEN __attribute__((visibility("hidden")))

/* ---- capped growable buffer (curl dynbuf style) ----------------------- */
struct lc_buf {
	char *data;   /* always NUL-terminated when non-NULL */
	size_t len;
	size_t cap;
	size_t max;   /* hard cap; adding past it fails with -1 */
};
void lc_buf_init(struct lc_buf *b, size_t max);
/* 0 ok; -1 with errno E2BIG (past max) or ENOMEM (out of memory); so do addstr and printf */
int lc_buf_add(struct lc_buf *b, const void *p, size_t n);
int lc_buf_addstr(struct lc_buf *b, const char *s);
/* room for `need` bytes in all (and the NUL), allocated now in one piece: a body whose length is known */
int lc_buf_reserve(struct lc_buf *b, size_t need);
int lc_buf_printf(struct lc_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void lc_buf_reset(struct lc_buf *b);                                /* len = 0, keeps memory */
void lc_buf_consume(struct lc_buf *b, size_t n);                     /* drop n bytes from the front */
void lc_buf_free(struct lc_buf *b);

/* ---- time (UTC) ----------------------------------------------------------
 * lc_now_ms() is the one clock every decision uses. Unit tests may point
 * lc_clock_hook at their own function; it is a hidden internal symbol, so it
 * is not a knob of any shipped binary.
 */
extern int64_t (*lc_clock_hook)(void) LC_HIDDEN;
int64_t lc_now_ms(void);
int64_t lc_now(void);                                  /* seconds */
int lc_time_parse(const char *s, int64_t *out);        /* RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac]Z" -> unix s; 0 ok, -1 bad */
void lc_time_format(int64_t t, char out[32]);          /* unix s -> "YYYY-MM-DDTHH:MM:SSZ" */
/* The times llmcap computes with: 0001-01-01 .. 9999-12-31T23:59:59Z. Window arithmetic clamps to
 * them, so no bucket from outside can overflow; reports outside them are refused. */
#define LC_TIME_MIN (-62135596800LL)
#define LC_TIME_MAX 253402300799LL
int64_t lc_floordiv(int64_t a, int64_t b);             /* floor(a / b), b > 0, for negative a too */
int64_t lc_days_from_civil(int64_t y, int m, int d);  /* days since 1970-01-01, proleptic Gregorian */

/* ---- money: integer micro-USD inside ---------------------------------- */
int lc_usd_to_micro(double usd, int64_t *out);         /* rounds to nearest; -1 if negative/NaN/too big */
void lc_micro_format(int64_t micro, char out[40]);     /* "$50.02" style (2 decimals, or more when needed) */

/* saturating: never wraps, stays in [INT64_MIN, INT64_MAX] */
int64_t lc_sat_add(int64_t a, int64_t b);

/* ---- numbers from outside: every one is bounds-checked where it enters ------
 * lc_parse_dec: exactly n bytes of decimal digits (no sign, no spaces; n >= 1) whose value is in
 * [lo, hi] (0 <= lo <= hi); 0 and *out, or -1. lc_parse_port: the same for a TCP port, 1..65535. */
int lc_parse_dec(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out);
int lc_parse_port(const char *s, size_t n, int *port);

/* a host name as the provider table keys it: lower case, no trailing dot; returns its length */
size_t lc_host_norm(char *h);

/* ---- big-endian keys (LMDB sorts bytes) ------------------------------------ */
void lc_be64(unsigned char *o, uint64_t v);
uint64_t lc_rbe64(const unsigned char *o);

/* ---- hashing ------------------------------------------------------------ */
void lc_sha256(const void *p, size_t n, unsigned char out[32]);
void lc_hex(const unsigned char *p, size_t n, char *out); /* out has 2n+1 bytes */
int lc_unhex(const char *hex, unsigned char *out, size_t n); /* exactly 2n hex chars; 0 ok */

/* ---- logging to stderr, level from LLMCAP_LOG (off|error|info|debug) ---- */
enum { LC_LOG_OFF = 0, LC_LOG_ERROR = 1, LC_LOG_INFO = 2, LC_LOG_DEBUG = 3 };
int lc_log_level(void);
void lc_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- misc --------------------------------------------------------------- */
int lc_read_file(const char *path, size_t max, struct lc_buf *out, char *err, size_t errlen);
int lc_write_file_atomic(const char *path, const void *p, size_t n, int mode, char *err, size_t errlen);
void lc_errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
