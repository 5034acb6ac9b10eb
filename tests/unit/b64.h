/* b64.h - base64 (the DSSE envelope's encoding) for the unit tests that forge envelopes; after
 * cmocka.h and sodium.h. */
#ifndef LC_TEST_B64_H
#define LC_TEST_B64_H

/* malloc'd, NUL-terminated */
static inline char *b64(const void *p, size_t n)
{
	size_t cap = sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_ORIGINAL);
	char *s = malloc(cap);

	assert_non_null(s);
	sodium_bin2base64(s, cap, p, n, sodium_base64_VARIANT_ORIGINAL);
	return s;
}

/* into out (cap bytes); returns the length */
static inline size_t unb64(const char *s, unsigned char *out, size_t cap)
{
	size_t n = 0;

	assert_int_equal(sodium_base642bin(out, cap, s, strlen(s), NULL, &n, NULL, sodium_base64_VARIANT_ORIGINAL), 0);
	return n;
}

#endif
