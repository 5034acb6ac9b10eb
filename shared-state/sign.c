/* sign.c - Ed25519 keys (libsodium) and the DSSE envelope around a policy.
 *
 * See sign.h for the formats. Verification order: size cap, strict envelope
 * shape, then at least one signature by a trusted key over
 * PAE(payloadType, payload bytes). Nothing here parses the payload.
 */
#include "sign.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define SECRET_TAG "llmcap-ed25519-secret"
#define PUBLIC_TAG "llmcap-ed25519"
#define KEY_FILE "llmcap.key"
#define PUB_FILE "llmcap.pub"
#define SECRET_FILE_MAX 4096
#define TRUST_FILE_MAX (256 * 1024)
#define SIGS_MAX 16
#define B64V sodium_base64_VARIANT_ORIGINAL

/* ---- libsodium init, once per process ---------------------------------- */

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static int sodium_status = -1;

static void sodium_init_once(void)
{
	sodium_status = sodium_init() < 0 ? -1 : 0;
}

static int crypto_ready(char *err, size_t errlen)
{
	pthread_once(&sodium_once, sodium_init_once);
	if (sodium_status != 0) {
		lc_errf(err, errlen, "crypto: libsodium failed to initialise");
		return -1;
	}
	return 0;
}

static void keyid_of(const unsigned char pk[32], char out[65])
{
	unsigned char h[32];
	lc_sha256(pk, 32, h);
	lc_hex(h, 32, out);
}

/* A short printable rendering of untrusted text for error messages. */
static void printable(const char *s, size_t n, char *out, size_t outlen)
{
	size_t j = 0, i;
	for (i = 0; i < n && j + 4 < outlen; i++) {
		unsigned char c = (unsigned char)s[i];
		out[j++] = (c >= 0x20 && c < 0x7f && c != '"') ? (char)c : '?';
	}
	if (i < n) {
		memcpy(out + j, "...", 3);
		j += 3;
	}
	out[j] = '\0';
}

/* Strict base64 (ORIGINAL, padded, no whitespace) of exactly `want` bytes
 * (want == 0: any length up to outcap). Returns decoded length or -1. */
static long b64_decode(const char *s, size_t slen, unsigned char *out, size_t outcap, size_t want)
{
	size_t bin_len = 0;
	const char *end = NULL;
	if (sodium_base642bin(out, outcap, s, slen, NULL, &bin_len, &end, B64V) != 0)
		return -1;
	if (end != s + slen)
		return -1;
	if (want && bin_len != want)
		return -1;
	return (long)bin_len;
}

/* ---- file helpers -------------------------------------------------------- */

static int write_all(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* mkdir -p, new components mode 0700 */
static int mkdirs(const char *dir, char *err, size_t errlen)
{
	char path[4096];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof path) {
		lc_errf(err, errlen, "keygen: bad directory name");
		return -1;
	}
	memcpy(path, dir, n + 1);
	while (n > 1 && path[n - 1] == '/')
		path[--n] = '\0';
	for (char *p = path + 1;; p++) {
		if (*p == '/' || *p == '\0') {
			char saved = *p;
			*p = '\0';
			if (mkdir(path, 0700) != 0 && errno != EEXIST) {
				lc_errf(err, errlen, "keygen: cannot create directory %s: %s", path,
					strerror(errno));
				return -1;
			}
			*p = saved;
			if (saved == '\0')
				break;
		}
	}
	struct stat st;
	if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
		lc_errf(err, errlen, "keygen: %s is not a directory", path);
		return -1;
	}
	return 0;
}

static int create_excl(const char *path, int mode, const void *p, size_t n, char *err,
		       size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
	if (fd < 0) {
		if (errno == EEXIST)
			lc_errf(err, errlen, "keygen: %s already exists; refusing to overwrite a key",
				path);
		else
			lc_errf(err, errlen, "keygen: cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (fchmod(fd, (mode_t)mode) != 0 || write_all(fd, p, n) != 0 || fsync(fd) != 0) {
		lc_errf(err, errlen, "keygen: cannot write %s: %s", path, strerror(errno));
		close(fd);
		unlink(path);
		return -1;
	}
	if (close(fd) != 0) {
		lc_errf(err, errlen, "keygen: cannot write %s: %s", path, strerror(errno));
		unlink(path);
		return -1;
	}
	return 0;
}

/* ---- keygen ------------------------------------------------------------ */

int lc_keygen(const char *dir, char *err, size_t errlen)
{
	char keypath[4200], pubpath[4200];
	struct stat st;

	if (crypto_ready(err, errlen) != 0)
		return -1;
	if (!dir || !*dir)
		dir = ".";
	if (snprintf(keypath, sizeof keypath, "%s/%s", dir, KEY_FILE) >= (int)sizeof keypath ||
	    snprintf(pubpath, sizeof pubpath, "%s/%s", dir, PUB_FILE) >= (int)sizeof pubpath) {
		lc_errf(err, errlen, "keygen: directory name too long");
		return -1;
	}
	if (mkdirs(dir, err, errlen) != 0)
		return -1;
	if (lstat(keypath, &st) == 0 || lstat(pubpath, &st) == 0) {
		lc_errf(err, errlen, "keygen: %s already exists; refusing to overwrite a key",
			lstat(keypath, &st) == 0 ? keypath : pubpath);
		return -1;
	}

	/* secrets: sk and its text form live in guarded memory only */
	const size_t sk_b64_len = sodium_base64_ENCODED_LEN(64, B64V);
	const size_t line_cap = sizeof SECRET_TAG + 1 + sk_b64_len + 2;
	unsigned char *sk = sodium_malloc(64);
	char *line = sodium_malloc(line_cap);
	if (!sk || !line) {
		sodium_free(sk);
		sodium_free(line);
		lc_errf(err, errlen, "keygen: out of memory");
		return -1;
	}
	unsigned char pk[32];
	char keyid[65];
	crypto_sign_keypair(pk, sk);
	keyid_of(pk, keyid);

	memcpy(line, SECRET_TAG " ", sizeof SECRET_TAG);
	sodium_bin2base64(line + sizeof SECRET_TAG, sk_b64_len, sk, 64, B64V);
	size_t ll = strlen(line);
	line[ll++] = '\n';
	line[ll] = '\0';

	int rc = create_excl(keypath, 0600, line, ll, err, errlen);
	sodium_free(line);
	sodium_free(sk);
	if (rc != 0)
		return -1;

	char pub_b64[sodium_base64_ENCODED_LEN(32, B64V)];
	char publine[sizeof PUBLIC_TAG + sizeof pub_b64 + 65 + 4];
	sodium_bin2base64(pub_b64, sizeof pub_b64, pk, 32, B64V);
	int pl = snprintf(publine, sizeof publine, "%s %s %s\n", PUBLIC_TAG, pub_b64, keyid);
	if (create_excl(pubpath, 0644, publine, (size_t)pl, err, errlen) != 0) {
		unlink(keypath);
		return -1;
	}
	int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	return 0;
}

/* ---- secret key -------------------------------------------------------- */

void lc_signkey_wipe(struct lc_signkey *k)
{
	if (k)
		sodium_memzero(k, sizeof *k);
}

int lc_signkey_load(const char *path, struct lc_signkey *out, char *err, size_t errlen)
{
	if (crypto_ready(err, errlen) != 0)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		lc_errf(err, errlen, "key: cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	char *buf = sodium_malloc(SECRET_FILE_MAX + 1);
	unsigned char *sk = sodium_malloc(64);
	int rc = -1;
	if (!buf || !sk) {
		lc_errf(err, errlen, "key: out of memory");
		goto out;
	}
	size_t n = 0;
	for (;;) {
		ssize_t r = read(fd, buf + n, SECRET_FILE_MAX + 1 - n);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			lc_errf(err, errlen, "key: cannot read %s: %s", path, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
		if (n > SECRET_FILE_MAX) {
			lc_errf(err, errlen, "key: %s is not an llmcap secret key (too big)", path);
			goto out;
		}
	}
	buf[n] = '\0';
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ' ||
			 buf[n - 1] == '\t'))
		buf[--n] = '\0';

	const size_t tl = sizeof SECRET_TAG; /* tag + the space */
	if (n < tl || memcmp(buf, SECRET_TAG " ", tl) != 0) {
		if (strncmp(buf, PUBLIC_TAG " ", sizeof PUBLIC_TAG) == 0)
			lc_errf(err, errlen,
				"key: %s is a public key; signing needs the secret key (llmcap.key)",
				path);
		else
			lc_errf(err, errlen, "key: %s is not an llmcap secret key (expected \"%s ...\")",
				path, SECRET_TAG);
		goto out;
	}
	if (b64_decode(buf + tl, n - tl, sk, 64, 64) < 0) {
		lc_errf(err, errlen, "key: %s: secret key is not base64 of 64 bytes", path);
		goto out;
	}
	/* sk = seed || pk; check the halves belong together */
	unsigned char seed[32], pk[32];
	unsigned char *sk2 = sodium_malloc(64);
	if (!sk2) {
		lc_errf(err, errlen, "key: out of memory");
		goto out;
	}
	crypto_sign_ed25519_sk_to_seed(seed, sk);
	crypto_sign_seed_keypair(pk, sk2, seed);
	sodium_memzero(seed, sizeof seed);
	int same = sodium_memcmp(sk2, sk, 64) == 0;
	sodium_free(sk2);
	if (!same) {
		lc_errf(err, errlen, "key: %s: secret key is corrupt (public half does not match)",
			path);
		goto out;
	}
	memcpy(out->sk, sk, 64);
	memcpy(out->pk, pk, 32);
	keyid_of(pk, out->keyid);
	rc = 0;
out:
	close(fd);
	sodium_free(buf); /* sodium_free wipes */
	sodium_free(sk);
	return rc;
}

/* ---- trust ------------------------------------------------------------- */

static int trust_add(struct lc_trust *t, const unsigned char pk[32])
{
	char keyid[65];
	keyid_of(pk, keyid);
	for (size_t i = 0; i < t->n; i++)
		if (strcmp(t->keys[i].keyid, keyid) == 0)
			return 0; /* already trusted */
	if (t->n >= LC_TRUST_MAX)
		return -1;
	memcpy(t->keys[t->n].pk, pk, 32);
	memcpy(t->keys[t->n].keyid, keyid, 65);
	t->n++;
	return 0;
}

int lc_trust_add_pub(struct lc_trust *t, const unsigned char pk[32])
{
	if (!t || !pk || t->n > LC_TRUST_MAX)
		return -1;
	return trust_add(t, pk);
}

int lc_trust_load(const char *path, struct lc_trust *t, char *err, size_t errlen)
{
	struct lc_buf b;
	lc_buf_init(&b, TRUST_FILE_MAX);
	char rerr[512];
	if (lc_read_file(path, TRUST_FILE_MAX, &b, rerr, sizeof rerr) != 0) {
		lc_errf(err, errlen, "trust: %s", rerr);
		lc_buf_free(&b);
		return -1;
	}
	if (t->n > LC_TRUST_MAX)
		t->n = 0;
	struct lc_trust tmp = *t; /* all or nothing */
	size_t added = 0;
	int rc = -1, lineno = 0;
	if (b.len && memchr(b.data, '\0', b.len)) {
		lc_errf(err, errlen, "trust: %s is not a public key file (binary data)", path);
		goto out;
	}
	for (char *line = b.data, *next; line && *line; line = next) {
		lineno++;
		next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		size_t n = strlen(line);
		while (n > 0 && (line[n - 1] == '\r' || line[n - 1] == ' ' || line[n - 1] == '\t'))
			line[--n] = '\0';
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '\0' || *p == '#')
			continue;
		if (strncmp(p, SECRET_TAG " ", sizeof SECRET_TAG) == 0) {
			lc_errf(err, errlen,
				"trust: %s is a secret key; trust the public key file (llmcap.pub)", path);
			goto out;
		}
		char tag[32], b64[128], kid[128], extra[2];
		int k = sscanf(p, "%31s %127s %127s %1s", tag, b64, kid, extra);
		if (k < 2 || strcmp(tag, PUBLIC_TAG) != 0 || k > 3) {
			lc_errf(err, errlen, "trust: %s: line %d is not \"%s <base64 key> <keyid>\"",
				path, lineno, PUBLIC_TAG);
			goto out;
		}
		unsigned char pk[32];
		if (b64_decode(b64, strlen(b64), pk, sizeof pk, 32) < 0) {
			lc_errf(err, errlen, "trust: %s: line %d: key is not base64 of 32 bytes", path,
				lineno);
			goto out;
		}
		char want[65];
		keyid_of(pk, want);
		if (k == 3 && strcmp(kid, want) != 0) {
			lc_errf(err, errlen, "trust: %s: line %d: keyid does not match the key", path,
				lineno);
			goto out;
		}
		if (trust_add(&tmp, pk) != 0) {
			lc_errf(err, errlen, "trust: more than %d trusted keys", LC_TRUST_MAX);
			goto out;
		}
		added++;
	}
	if (added == 0) {
		lc_errf(err, errlen, "trust: %s holds no public key", path);
		goto out;
	}
	*t = tmp;
	rc = 0;
out:
	lc_buf_free(&b);
	return rc;
}

/* ---- DSSE ------------------------------------------------------------- */

/* PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body */
static unsigned char *pae(const char *type, const void *body, size_t len, size_t *out_len)
{
	size_t tl = strlen(type);
	char head[128];
	int hl = snprintf(head, sizeof head, "DSSEv1 %zu ", tl);
	char mid[48];
	int ml = snprintf(mid, sizeof mid, " %zu ", len);
	size_t total = (size_t)hl + tl + (size_t)ml + len;
	unsigned char *m = malloc(total ? total : 1);
	if (!m)
		return NULL;
	unsigned char *p = m;
	memcpy(p, head, (size_t)hl);
	p += hl;
	memcpy(p, type, tl);
	p += tl;
	memcpy(p, mid, (size_t)ml);
	p += ml;
	if (len)
		memcpy(p, body, len);
	*out_len = total;
	return m;
}

int lc_dsse_sign(const struct lc_signkey *k, const void *payload, size_t len,
		 char **envelope_out, size_t *envelope_len, char *err, size_t errlen)
{
	if (crypto_ready(err, errlen) != 0)
		return -1;
	*envelope_out = NULL;
	if (envelope_len)
		*envelope_len = 0;
	/* the envelope carries ~4/3 of the payload; refuse what verify would refuse */
	if (len > (size_t)LC_ENVELOPE_MAX / 4 * 3) {
		lc_errf(err, errlen, "sign: payload is %zu bytes; the envelope would be over the %d-byte cap",
			len, LC_ENVELOPE_MAX);
		return -1;
	}
	size_t ml;
	unsigned char *m = pae(LC_PAYLOAD_TYPE, payload, len, &ml);
	size_t b64cap = sodium_base64_ENCODED_LEN(len, B64V);
	char *b64 = malloc(b64cap);
	if (!m || !b64) {
		free(m);
		free(b64);
		lc_errf(err, errlen, "sign: out of memory");
		return -1;
	}
	unsigned char sig[crypto_sign_BYTES];
	crypto_sign_detached(sig, NULL, m, ml, k->sk);
	free(m);
	sodium_bin2base64(b64, b64cap, payload, len, B64V);
	char sig_b64[sodium_base64_ENCODED_LEN(crypto_sign_BYTES, B64V)];
	sodium_bin2base64(sig_b64, sizeof sig_b64, sig, sizeof sig, B64V);

	json_t *env = json_pack("{s:s, s:s, s:[{s:s, s:s}]}", "payloadType", LC_PAYLOAD_TYPE,
				"payload", b64, "signatures", "keyid", k->keyid, "sig", sig_b64);
	free(b64);
	char *s = env ? json_dumps(env, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
	json_decref(env);
	if (!s) {
		lc_errf(err, errlen, "sign: out of memory");
		return -1;
	}
	size_t sl = strlen(s);
	char *o = realloc(s, sl + 2);
	if (!o) {
		free(s);
		lc_errf(err, errlen, "sign: out of memory");
		return -1;
	}
	o[sl++] = '\n';
	o[sl] = '\0';
	if (sl > LC_ENVELOPE_MAX) {
		free(o);
		lc_errf(err, errlen, "sign: envelope would be %zu bytes, over the %d-byte cap", sl,
			LC_ENVELOPE_MAX);
		return -1;
	}
	*envelope_out = o;
	if (envelope_len)
		*envelope_len = sl;
	return 0;
}

struct sig_entry {
	const char *keyid;
	unsigned char sig[crypto_sign_BYTES];
};

static int field_string(json_t *o, const char *name, const char *where, const char **out,
			size_t *len, char *err, size_t errlen)
{
	json_t *v = json_object_get(o, name);
	if (!v) {
		lc_errf(err, errlen, "envelope: %s is missing \"%s\"", where, name);
		return -1;
	}
	if (!json_is_string(v)) {
		lc_errf(err, errlen, "envelope: %s\"%s\" must be a string", where, name);
		return -1;
	}
	*out = json_string_value(v);
	if (len)
		*len = json_string_length(v);
	return 0;
}

int lc_dsse_verify(const struct lc_trust *t, const void *envelope, size_t len,
		   unsigned char **payload_out, size_t *payload_len, char *signer_keyid,
		   char *err, size_t errlen)
{
	if (payload_out)
		*payload_out = NULL;
	if (payload_len)
		*payload_len = 0;
	if (signer_keyid)
		signer_keyid[0] = '\0';

	/* 1. size cap, before anything looks at the bytes */
	if (len > LC_ENVELOPE_MAX) {
		lc_errf(err, errlen, "envelope: file is %zu bytes, over the %d-byte cap", len,
			LC_ENVELOPE_MAX);
		return -1;
	}
	if (crypto_ready(err, errlen) != 0)
		return -1;
	if (len == 0 || !envelope) {
		lc_errf(err, errlen, "envelope: empty file");
		return -1;
	}

	/* 2. strict envelope */
	json_error_t jerr;
	json_t *root = json_loadb(envelope, len, JSON_REJECT_DUPLICATES, &jerr);
	int rc = -1;
	unsigned char *payload = NULL;
	struct sig_entry sigs[SIGS_MAX];
	size_t nsig = 0;

	if (!root) {
		if (json_error_code(&jerr) == json_error_duplicate_key)
			lc_errf(err, errlen, "envelope: duplicate key in JSON (line %d: %s)", jerr.line,
				jerr.text);
		else
			lc_errf(err, errlen, "envelope: not JSON (line %d: %s)", jerr.line, jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		lc_errf(err, errlen, "envelope: must be a JSON object");
		goto out;
	}
	{
		const char *key;
		json_t *val;
		json_object_foreach(root, key, val) {
			(void)val;
			if (strcmp(key, "payloadType") != 0 && strcmp(key, "payload") != 0 &&
			    strcmp(key, "signatures") != 0) {
				char pk[64];
				printable(key, strlen(key), pk, sizeof pk);
				lc_errf(err, errlen,
					"envelope: unknown field \"%s\" (allowed: payloadType, payload, signatures)",
					pk);
				goto out;
			}
		}
	}
	const char *ptype, *pb64;
	size_t ptype_len, pb64_len;
	if (field_string(root, "payloadType", "", &ptype, &ptype_len, err, errlen) != 0)
		goto out;
	if (ptype_len != strlen(LC_PAYLOAD_TYPE) || strcmp(ptype, LC_PAYLOAD_TYPE) != 0) {
		char got[80];
		printable(ptype, ptype_len, got, sizeof got);
		lc_errf(err, errlen, "envelope: payloadType must be \"%s\" (got \"%s\")",
			LC_PAYLOAD_TYPE, got);
		goto out;
	}
	if (field_string(root, "payload", "", &pb64, &pb64_len, err, errlen) != 0)
		goto out;
	json_t *sarr = json_object_get(root, "signatures");
	if (!sarr) {
		lc_errf(err, errlen, "envelope: is missing \"signatures\"");
		goto out;
	}
	if (!json_is_array(sarr) || json_array_size(sarr) == 0) {
		lc_errf(err, errlen, "envelope: \"signatures\" must be a non-empty array");
		goto out;
	}
	if (json_array_size(sarr) > SIGS_MAX) {
		lc_errf(err, errlen, "envelope: more than %d signatures", SIGS_MAX);
		goto out;
	}
	{
		size_t i;
		json_t *s;
		json_array_foreach(sarr, i, s) {
			char where[48];
			snprintf(where, sizeof where, "signatures[%zu] ", i);
			if (!json_is_object(s)) {
				lc_errf(err, errlen, "envelope: signatures[%zu] must be an object", i);
				goto out;
			}
			const char *key;
			json_t *val;
			json_object_foreach(s, key, val) {
				(void)val;
				if (strcmp(key, "keyid") != 0 && strcmp(key, "sig") != 0) {
					char pk[64];
					printable(key, strlen(key), pk, sizeof pk);
					lc_errf(err, errlen,
						"envelope: signatures[%zu] has unknown field \"%s\" (allowed: keyid, sig)",
						i, pk);
					goto out;
				}
			}
			const char *kid, *sb64;
			size_t sb64_len;
			if (field_string(s, "keyid", where, &kid, NULL, err, errlen) != 0 ||
			    field_string(s, "sig", where, &sb64, &sb64_len, err, errlen) != 0)
				goto out;
			if (b64_decode(sb64, sb64_len, sigs[nsig].sig, sizeof sigs[nsig].sig,
				       crypto_sign_BYTES) < 0) {
				lc_errf(err, errlen,
					"envelope: signatures[%zu].sig is not base64 of a %d-byte signature",
					i, crypto_sign_BYTES);
				goto out;
			}
			sigs[nsig++].keyid = kid;
		}
	}
	size_t pcap = pb64_len / 4 * 3 + 3;
	payload = malloc(pcap + 1);
	if (!payload) {
		lc_errf(err, errlen, "envelope: out of memory");
		goto out;
	}
	long plen = b64_decode(pb64, pb64_len, payload, pcap, 0);
	if (plen < 0) {
		lc_errf(err, errlen, "envelope: payload is not valid base64");
		goto out;
	}
	if (plen == 0) {
		lc_errf(err, errlen, "envelope: payload is empty");
		goto out;
	}
	payload[plen] = '\0';

	/* 3. at least one signature by a trusted key, checked with the key its keyid names */
	size_t ml;
	unsigned char *m = pae(LC_PAYLOAD_TYPE, payload, (size_t)plen, &ml);
	if (!m) {
		lc_errf(err, errlen, "envelope: out of memory");
		goto out;
	}
	const char *good = NULL, *bad = NULL;
	size_t ntrust = (t && t->n <= LC_TRUST_MAX) ? t->n : 0;
	for (size_t i = 0; i < nsig && !good; i++) {
		for (size_t j = 0; j < ntrust; j++) {
			if (strcmp(sigs[i].keyid, t->keys[j].keyid) != 0)
				continue;
			if (crypto_sign_verify_detached(sigs[i].sig, m, ml, t->keys[j].pk) == 0)
				good = t->keys[j].keyid;
			else if (!bad)
				bad = t->keys[j].keyid;
			break;
		}
	}
	free(m);
	if (!good) {
		if (ntrust == 0)
			lc_errf(err, errlen, "signature: no signature by a trusted key (no trusted keys given)");
		else if (bad)
			lc_errf(err, errlen,
				"signature: no signature by a trusted key (the signature by trusted key %.16s does not verify: payload or signature altered)",
				bad);
		else {
			char kid[24];
			printable(sigs[0].keyid, strlen(sigs[0].keyid), kid, 20);
			lc_errf(err, errlen,
				"signature: no signature by a trusted key (signed by keyid %s%s; %zu key%s trusted)",
				kid, nsig > 1 ? " and others" : "", ntrust, ntrust == 1 ? "" : "s");
		}
		goto out;
	}
	if (signer_keyid)
		memcpy(signer_keyid, good, 65);
	if (payload_out) {
		*payload_out = payload;
		payload = NULL;
	}
	if (payload_len)
		*payload_len = (size_t)plen;
	rc = 0;
out:
	free(payload);
	json_decref(root);
	return rc;
}
