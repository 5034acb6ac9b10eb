/* jscan.c - the hex and UTF-8 checks of the tree, the fast JSON scan and the
 * jansson readers of the wire formats (jscan.h).
 */
#include "jscan.h"

#include <stdlib.h>
#include <string.h>

/* ---- bytes ----------------------------------------------------------------------- */

int lc_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

size_t lc_utf8_len(const unsigned char *p, size_t n)
{
	size_t len, i;
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		len = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		len = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		len = 4, cp = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* ---- the fast scan ------------------------------------------------------------------ */

struct fj {
	const unsigned char *p, *e;
	int depth;
};

#define FJ_MAX_DEPTH 64

static inline void fj_ws(struct fj *s)
{
	while (s->p < s->e && (*s->p == ' ' || *s->p == '\n' || *s->p == '\r' || *s->p == '\t'))
		s->p++;
}

static int fj_hex4(const unsigned char *p, const unsigned char *e, unsigned *out)
{
	unsigned v = 0;

	if (e - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		int d = lc_hexval(p[i]);

		if (d < 0)
			return -1;
		v = v << 4 | (unsigned)d;
	}
	*out = v;
	return 0;
}

/* s->p at the opening quote; *esc: the string holds a backslash */
static int fj_string(struct fj *s, bool *esc)
{
	const unsigned char *p = s->p + 1, *e = s->e;

	*esc = false;
	for (;;) {
		unsigned c, v, v2;
		size_t k;

		while (p < e && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		if (p >= e)
			return -1;
		c = *p;
		if (c == '"') {
			s->p = p + 1;
			return 0;
		}
		if (c < 0x20)
			return -1;
		if (c == '\\') {
			*esc = true;
			if (e - p < 2)
				return -1;
			c = p[1];
			if (c == 'u') {
				if (fj_hex4(p + 2, e, &v))
					return -1;
				p += 6;
				if (v >= 0xD800 && v <= 0xDBFF) {
					if (e - p < 2 || p[0] != '\\' || p[1] != 'u' || fj_hex4(p + 2, e, &v2) ||
					    v2 < 0xDC00 || v2 > 0xDFFF)
						return -1;
					p += 6;
				} else if (v >= 0xDC00 && v <= 0xDFFF) {
					return -1;
				}
			} else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' || c == 'r' ||
				   c == 't') {
				p += 2;
			} else {
				return -1;
			}
			continue;
		}
		/* strict UTF-8: no overlongs, no surrogates, nothing above U+10FFFF */
		k = lc_utf8_len(p, (size_t)(e - p));
		if (k == 0)
			return -1;
		p += k;
	}
}

static int fj_number(struct fj *s)
{
	const unsigned char *p = s->p, *e = s->e, *d0;
	size_t nd;
	bool real = false;

	if (p < e && *p == '-')
		p++;
	if (p >= e)
		return -1;
	d0 = p;
	if (*p == '0') {
		p++;
		if (p < e && *p >= '0' && *p <= '9')
			return -1;
	} else if (*p >= '1' && *p <= '9') {
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	} else {
		return -1;
	}
	nd = (size_t)(p - d0);
	if (p < e && *p == '.') {
		p++;
		if (p >= e || *p < '0' || *p > '9')
			return -1;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
		real = true;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		long x = 0;
		bool neg = false;
		const unsigned char *x0;

		p++;
		if (p < e && (*p == '+' || *p == '-'))
			neg = *p++ == '-';
		x0 = p;
		while (p < e && *p >= '0' && *p <= '9' && p - x0 < 5)
			x = x * 10 + (*p++ - '0');
		if (p == x0 || (p < e && *p >= '0' && *p <= '9'))
			return -1;  /* no digits, or an exponent too long to judge here */
		if (!neg && (long)nd + x > 300)
			return -1;  /* might overflow a double: jansson's verdict */
		real = true;
	}
	if (!real && nd > 18)
		return -1;  /* might not fit json_int_t: jansson's verdict */
	if (real && nd > 300)
		return -1;
	s->p = p;
	return 0;
}

static int fj_value(struct fj *s);

/* One "key": value member; a wanted key's value span is recorded in pk. */
static int fj_member(struct fj *s, struct lc_jpick *pk, int npk)
{
	const unsigned char *k, *v;
	size_t kl;
	bool esc;

	fj_ws(s);
	if (s->p >= s->e || *s->p != '"')
		return -1;
	k = s->p + 1;
	if (fj_string(s, &esc) || esc)
		return -1;  /* keys with escapes (maybe \u0000): jansson decides */
	kl = (size_t)(s->p - 1 - k);
	fj_ws(s);
	if (s->p >= s->e || *s->p != ':')
		return -1;
	s->p++;
	fj_ws(s);
	v = s->p;
	if (fj_value(s))
		return -1;
	for (int i = 0; i < npk; i++)
		if (pk[i].klen == kl && memcmp(pk[i].key, k, kl) == 0) {
			pk[i].v = v;
			pk[i].vlen = (size_t)(s->p - v);
		}
	return 0;
}

/* An object (close '}': members) or an array (close ']': values), s->p at its opening byte. */
static int fj_container(struct fj *s, unsigned char close, struct lc_jpick *pk, int npk)
{
	if (++s->depth > FJ_MAX_DEPTH)
		return -1;
	s->p++;
	fj_ws(s);
	if (s->p < s->e && *s->p == close) {
		s->p++;
		s->depth--;
		return 0;
	}
	for (;;) {
		if (close == '}' ? fj_member(s, pk, npk) : fj_value(s))
			return -1;
		fj_ws(s);
		if (s->p >= s->e)
			return -1;
		if (*s->p == ',') {
			s->p++;
			continue;
		}
		if (*s->p != close)
			return -1;
		s->p++;
		s->depth--;
		return 0;
	}
}

static int fj_literal(struct fj *s, const char *lit, size_t n)
{
	if ((size_t)(s->e - s->p) < n || memcmp(s->p, lit, n) != 0)
		return -1;
	s->p += n;
	return 0;
}

static int fj_value(struct fj *s)
{
	bool esc;

	fj_ws(s);
	if (s->p >= s->e)
		return -1;
	switch (*s->p) {
	case '"':
		return fj_string(s, &esc);
	case '{':
		return fj_container(s, '}', NULL, 0);
	case '[':
		return fj_container(s, ']', NULL, 0);
	case 't':
		return fj_literal(s, "true", 4);
	case 'f':
		return fj_literal(s, "false", 5);
	case 'n':
		return fj_literal(s, "null", 4);
	default:
		return fj_number(s);
	}
}

/* one validated value span as jansson would have built it */
static json_t *fj_make(const unsigned char *v, size_t n)
{
	switch (v[0]) {
	case '"':
		if (!memchr(v, '\\', n))
			return json_stringn((const char *)v + 1, n - 2);
		break;
	case 't':
		return json_true();
	case 'f':
		return json_false();
	case 'n':
		return json_null();
	case '{':
	case '[':
		break;
	default:
		if (n < 24 && !memchr(v, '.', n) && !memchr(v, 'e', n) && !memchr(v, 'E', n)) {
			char b[24];

			memcpy(b, v, n);
			b[n] = '\0';
			return json_integer((json_int_t)strtoll(b, NULL, 10));
		}
		break;
	}
	return json_loadb((const char *)v, n, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
}

json_t *lc_jscan_subset(const void *body, size_t len, struct lc_jpick *pk, int npk)
{
	struct fj s = {.p = body, .e = (const unsigned char *)body + len, .depth = 0};
	json_t *root;

	fj_ws(&s);
	if (s.p >= s.e || *s.p != '{' || fj_container(&s, '}', pk, npk))
		return NULL;
	fj_ws(&s);
	if (s.p != s.e)
		return NULL;
	root = json_object();
	if (!root)
		return NULL;
	for (int i = 0; i < npk; i++) {
		char key[256];
		json_t *v;

		if (!pk[i].v || pk[i].klen >= sizeof(key))
			continue;
		v = fj_make(pk[i].v, pk[i].vlen);
		memcpy(key, pk[i].key, pk[i].klen);
		key[pk[i].klen] = '\0';
		if (!v || json_object_set_new(root, key, v)) {
			json_decref(root);
			return NULL;
		}
	}
	return root;
}

int lc_jpick_add(struct lc_jpick *pk, int n, const char *key, size_t klen)
{
	if (n < 0 || n >= LC_JPICK_MAX)
		return -1;
	pk[n] = (struct lc_jpick){.key = key, .klen = klen};
	return n + 1;
}

/* ---- jansson readers ------------------------------------------------------------- */

int lc_json_count(json_t *obj, const char *key, int64_t *out)
{
	json_t *v = json_object_get(obj, key);
	int64_t x;

	if (!v || json_is_null(v))
		return 0;
	if (json_is_integer(v)) {
		x = json_integer_value(v);
	} else if (json_is_real(v)) {
		double r = json_real_value(v);
		if (!(r >= 0 && r <= (double)LC_TOKENS_MAX) || r != (double)(int64_t)r)
			return -1;
		x = (int64_t)r;
	} else {
		return -1;
	}
	if (x < 0 || x > LC_TOKENS_MAX)
		return -1;
	*out = x;
	return 1;
}

json_t *lc_json_path(json_t *root, const char *dotted)
{
	char key[256];
	const char *p = dotted;
	json_t *cur = root;

	while (cur && *p) {
		size_t n = strcspn(p, ".");
		if (n == 0 || n >= sizeof(key) || !json_is_object(cur))
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		cur = json_object_get(cur, key);
		p += n;
		if (*p == '.')
			p++;
	}
	return cur;
}

bool lc_json_name(json_t *v, const char **s, size_t *n)
{
	if (!json_is_string(v))
		return false;
	*s = json_string_value(v);
	*n = json_string_length(v);
	return *n > 0 && *n < 128 && strlen(*s) == *n;
}

void lc_json_model(char dst[128], json_t *v)
{
	const char *s;
	size_t n;

	if (lc_json_name(v, &s, &n)) {
		memcpy(dst, s, n);
		dst[n] = '\0';
	}
}
