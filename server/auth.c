/* auth.c - bearer tokens: named admin tokens with a role (admin: every
 * call; read: GET only). Only SHA-256 hashes are
 * kept; every comparison is constant time and walks every token.
 */
#include <ctype.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "srv.h"
#include "util.h"

/* sha256 of the token without surrounding whitespace; -1 when under 16 characters */
static int token_hash(const char *token, size_t len, unsigned char out[32])
{
	while (len > 0 && isspace((unsigned char)token[len - 1]))
		len--;
	while (len > 0 && isspace((unsigned char)*token)) {
		token++;
		len--;
	}
	if (len < 16)
		return -1;
	lc_sha256(token, len, out);
	return 0;
}

/* sha256 of the bearer in an Authorization header; false when there is none */
static bool bearer_hash(const char *auth, unsigned char h[32])
{
	if (!auth || strncasecmp(auth, "Bearer ", 7) != 0)
		return false;
	auth += 7;
	while (*auth == ' ')
		auth++;
	size_t n = strlen(auth);
	while (n > 0 && isspace((unsigned char)auth[n - 1]))
		n--;
	lc_sha256(auth, n, h);
	return true;
}

int srv_add_token(struct srv *s, const char *name, enum srv_role role, const char *token, size_t len, char *err,
		  size_t errlen)
{
	unsigned char h[32];
	if (!srv_id_ok(name)) {
		lc_errf(err, errlen, "token name '%.80s': 1-%d characters of A-Z a-z 0-9 . _ - @ :", name, SRV_ID_MAX);
		return -1;
	}
	if (token_hash(token, len, h) != 0) {
		lc_errf(err, errlen, "token '%s': must be at least 16 characters", name);
		return -1;
	}
	for (int i = 0; i < s->ntokens; i++) {
		if (strcmp(s->tokens[i].name, name) == 0) {
			lc_errf(err, errlen, "token '%s': the name is used twice", name);
			return -1;
		}
		if (sodium_memcmp(s->tokens[i].hash, h, 32) == 0) {
			lc_errf(err, errlen, "token '%s': the same token as '%s'", name, s->tokens[i].name);
			return -1;
		}
	}
	if (s->ntokens == SRV_MAX_TOKENS) {
		lc_errf(err, errlen, "more than %d admin tokens", SRV_MAX_TOKENS);
		return -1;
	}
	struct srv_token *t = &s->tokens[s->ntokens++];
	snprintf(t->name, sizeof t->name, "%s", name);
	t->role = role;
	memcpy(t->hash, h, 32);
	return 0;
}

int srv_set_admin_token(struct srv *s, const char *token, size_t len)
{
	char err[256];
	return srv_add_token(s, "admin", SRV_ROLE_ADMIN, token, len, err, sizeof err);
}

int srv_load_tokens(struct srv *s, const char *text, size_t len, char *err, size_t errlen)
{
	int lineno = 0;
	for (const char *p = text, *end = text + len; p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		char line[1024], name[128], role[32], tok[600], extra[2];
		char why[256];
		lineno++;
		if (n >= sizeof line) {
			lc_errf(err, errlen, "line %d: too long", lineno);
			return -1;
		}
		memcpy(line, p, n);
		line[n] = 0;
		p += n + 1;
		char *q = line + strspn(line, " \t\r");
		if (!*q || *q == '#')
			continue;
		int f = sscanf(q, "%127s %31s %599s %1s", name, role, tok, extra);
		sodium_memzero(line, sizeof line);
		if (f != 3) {
			sodium_memzero(tok, sizeof tok);
			lc_errf(err, errlen, "line %d: expected NAME ROLE TOKEN (ROLE admin or read)", lineno);
			return -1;
		}
		enum srv_role r = strcmp(role, "admin") == 0 ? SRV_ROLE_ADMIN : strcmp(role, "read") == 0 ? SRV_ROLE_READ : 0;
		int rc = r ? srv_add_token(s, name, r, tok, strlen(tok), why, sizeof why) : -1;
		sodium_memzero(tok, sizeof tok);
		if (!r) {
			lc_errf(err, errlen, "line %d: role '%s': must be admin or read", lineno, role);
			return -1;
		}
		if (rc != 0) {
			lc_errf(err, errlen, "line %d: %s", lineno, why);
			return -1;
		}
	}
	return 0;
}

const struct srv_token *srv_token_of(const struct srv *s, const char *auth)
{
	unsigned char h[32];
	const struct srv_token *found = NULL;
	if (!bearer_hash(auth, h))
		return NULL;
	for (int i = 0; i < s->ntokens; i++)   /* no early exit: the time does not depend on which matched */
		if (sodium_memcmp(s->tokens[i].hash, h, 32) == 0)
			found = &s->tokens[i];
	return found;
}

bool srv_admin_ok(const struct srv *s, const char *auth)
{
	const struct srv_token *t = srv_token_of(s, auth);
	return t && t->role == SRV_ROLE_ADMIN;
}
