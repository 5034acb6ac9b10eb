/* util.c - capped buffers, UTC time, money, hashing, logging, files. */
#include "util.h"
#include "jscan.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- buffers ------------------------------------------------------------ */

void lc_buf_init(struct lc_buf *b, size_t max)
{
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->max = max;
}

static int buf_reserve(struct lc_buf *b, size_t need)
{
	size_t ncap;
	char *p;

	if (need + 1 <= b->cap)
		return 0;
	if (need > b->max) {
		errno = E2BIG;
		return -1;
	}
	ncap = b->cap ? b->cap : 64;
	while (ncap < need + 1)
		ncap *= 2;
	if (ncap > b->max + 1)
		ncap = b->max + 1;
	p = realloc(b->data, ncap);
	if (!p) {
		errno = ENOMEM;
		return -1;
	}
	b->data = p;
	b->cap = ncap;
	return 0;
}

int lc_buf_reserve(struct lc_buf *b, size_t need)
{
	return buf_reserve(b, need);
}

int lc_buf_add(struct lc_buf *b, const void *p, size_t n)
{
	if (n > b->max || b->len > b->max - n) {
		errno = E2BIG;
		return -1;
	}
	if (buf_reserve(b, b->len + n))
		return -1;
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int lc_buf_addstr(struct lc_buf *b, const char *s)
{
	return lc_buf_add(b, s, strlen(s));
}

int lc_buf_printf(struct lc_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;
	char small[256];

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0)
		return -1;
	if ((size_t)n < sizeof(small))
		return lc_buf_add(b, small, (size_t)n);
	if (b->len > b->max || (size_t)n > b->max - b->len) {
		errno = E2BIG;
		return -1;
	}
	if (buf_reserve(b, b->len + (size_t)n))
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

void lc_buf_reset(struct lc_buf *b)
{
	b->len = 0;
	if (b->data)
		b->data[0] = '\0';
}

void lc_buf_consume(struct lc_buf *b, size_t n)
{
	if (n >= b->len) {
		lc_buf_reset(b);
		return;
	}
	memmove(b->data, b->data + n, b->len - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

void lc_buf_free(struct lc_buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}

/* ---- time --------------------------------------------------------------- */

int64_t (*lc_clock_hook)(void);

int64_t lc_now_ms(void)
{
	struct timespec ts;

	if (lc_clock_hook)
		return lc_clock_hook();
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t lc_now(void)
{
	int64_t ms = lc_now_ms();

	return lc_floordiv(ms, 1000);
}

static int is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

size_t lc_host_norm(char *h)
{
	size_t n = 0;

	for (; h[n]; n++)
		h[n] = (char)(h[n] >= 'A' && h[n] <= 'Z' ? h[n] + 32 : h[n]);
	if (n && h[n - 1] == '.')  /* "api.openai.com." is the same host */
		h[--n] = '\0';
	return n;
}

int64_t lc_floordiv(int64_t a, int64_t b)
{
	return a >= 0 ? a / b : -((-(a + 1)) / b) - 1;
}

int64_t lc_sat_add(int64_t a, int64_t b)
{
	int64_t r;

	if (__builtin_add_overflow(a, b, &r))
		return b > 0 ? INT64_MAX : INT64_MIN;
	return r;
}

int lc_parse_dec(const char *s, size_t n, int64_t lo, int64_t hi, int64_t *out)
{
	int64_t v = 0;

	if (!s || n == 0 || lo < 0 || lo > hi)
		return -1;
	for (size_t i = 0; i < n; i++) {
		int d = s[i] - '0';

		if (d < 0 || d > 9)
			return -1;
		if (v > hi / 10 || v * 10 > hi - d)  /* v * 10 + d would pass hi (tested without wrapping) */
			return -1;
		v = v * 10 + d;
	}
	if (v < lo)
		return -1;
	*out = v;
	return 0;
}

int lc_parse_port(const char *s, size_t n, int *port)
{
	int64_t v;

	if (lc_parse_dec(s, n, 1, 65535, &v))
		return -1;
	*port = (int)v;
	return 0;
}

void lc_be64(unsigned char *o, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		o[i] = (unsigned char)v;
}

uint64_t lc_rbe64(const unsigned char *o)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | o[i];
	return v;
}

/* days since 1970-01-01 for a proleptic Gregorian date (Howard Hinnant's algorithm) */
int64_t lc_days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

int lc_time_parse(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, se, n = 0;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	const char *p;

	if (!s || strlen(s) < 20)
		return -1;
	if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &se, &n) != 6 || n != 19)
		return -1;
	p = s + 19;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return -1;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (strcmp(p, "Z") != 0)
		return -1;
	if (y < 1970 || y > 9999 || mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 60 || d < 1)
		return -1;
	if (d > mdays[mo - 1] + (mo == 2 && is_leap(y)))
		return -1;
	*out = lc_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (se == 60 ? 59 : se);
	return 0;
}

void lc_time_format(int64_t t, char out[32])
{
	time_t tt = (time_t)t;
	struct tm tm;

	if (!gmtime_r(&tt, &tm)) {
		snprintf(out, 32, "invalid");
		return;
	}
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* ---- money -------------------------------------------------------------- */

int lc_usd_to_micro(double usd, int64_t *out)
{
	double m;

	if (isnan(usd) || usd < 0 || usd > 9.0e12)
		return -1;
	m = round(usd * 1e6);
	*out = (int64_t)m;
	return 0;
}

void lc_micro_format(int64_t micro, char out[40])
{
	const char *sign = micro < 0 ? "-" : "";
	uint64_t a = micro < 0 ? (uint64_t)(-(micro + 1)) + 1 : (uint64_t)micro;
	uint64_t whole = a / 1000000, frac = a % 1000000;

	if (frac % 10000 == 0)
		snprintf(out, 40, "%s$%llu.%02llu", sign, (unsigned long long)whole,
			 (unsigned long long)(frac / 10000));
	else {
		int len;

		len = snprintf(out, 40, "%s$%llu.%06llu", sign, (unsigned long long)whole,
			       (unsigned long long)frac);
		while (len > 0 && out[len - 1] == '0')
			out[--len] = '\0';
	}
}

/* ---- hashing ------------------------------------------------------------ */

void lc_sha256(const void *p, size_t n, unsigned char out[32])
{
	crypto_hash_sha256(out, p, n);
}

void lc_hex(const unsigned char *p, size_t n, char *out)
{
	static const char hx[] = "0123456789abcdef";
	size_t i;

	for (i = 0; i < n; i++) {
		out[2 * i] = hx[p[i] >> 4];
		out[2 * i + 1] = hx[p[i] & 15];
	}
	out[2 * n] = '\0';
}

int lc_unhex(const char *hex, unsigned char *out, size_t n)
{
	size_t i;

	if (!hex || strlen(hex) != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		int a = lc_hexval((unsigned char)hex[2 * i]), b = lc_hexval((unsigned char)hex[2 * i + 1]);

		if (a < 0 || b < 0)
			return -1;
		out[i] = (unsigned char)(a << 4 | b);
	}
	return 0;
}

/* ---- logging ------------------------------------------------------------ */

int lc_log_level(void)
{
	static int level = -1;
	const char *s;

	if (level >= 0)
		return level;
	s = getenv("LLMCAP_LOG");
	if (!s || !*s || !strcmp(s, "error"))
		level = LC_LOG_ERROR;
	else if (!strcmp(s, "off"))
		level = LC_LOG_OFF;
	else if (!strcmp(s, "info"))
		level = LC_LOG_INFO;
	else if (!strcmp(s, "debug"))
		level = LC_LOG_DEBUG;
	else
		level = LC_LOG_ERROR;
	return level;
}

void lc_log(int level, const char *fmt, ...)
{
	char line[1024];
	int saved = errno, n;
	va_list ap;

	if (level > lc_log_level())
		return;
	n = snprintf(line, sizeof(line), "llmcap[%d]: ", (int)getpid());
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	/* one write(2) so concurrent lines do not interleave */
	if (write(2, line, (size_t)n) < 0) {
		/* nothing to do: logging is best effort */
	}
	errno = saved;
}

void lc_errf(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- files -------------------------------------------------------------- */

int lc_read_file(const char *path, size_t max, struct lc_buf *out, char *err, size_t errlen)
{
	char chunk[65536];
	ssize_t n;
	int fd;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		lc_errf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	lc_buf_init(out, max);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			lc_errf(err, errlen, "%s: %s", path, strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		if (lc_buf_add(out, chunk, (size_t)n)) {
			lc_errf(err, errlen, "%s: larger than the %zu-byte cap", path, max);
			goto fail;
		}
	}
	close(fd);
	if (!out->data)
		lc_buf_add(out, "", 0);
	return 0;
fail:
	close(fd);
	lc_buf_free(out);
	return -1;
}

int lc_write_file_atomic(const char *path, const void *p, size_t n, int mode, char *err, size_t errlen)
{
	char tmp[4096];
	const char *c = p;
	int fd;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp)) {
		lc_errf(err, errlen, "%s: path too long", path);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		lc_errf(err, errlen, "%s: %s", tmp, strerror(errno));
		return -1;
	}
	while (n) {
		ssize_t w = write(fd, c, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			lc_errf(err, errlen, "%s: %s", tmp, strerror(errno));
			goto fail;
		}
		c += w;
		n -= (size_t)w;
	}
	if (fchmod(fd, (mode_t)mode) || fsync(fd) || close(fd)) {
		lc_errf(err, errlen, "%s: %s", tmp, strerror(errno));
		fd = -1;
		goto fail;
	}
	if (rename(tmp, path)) {
		lc_errf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	return -1;
}
