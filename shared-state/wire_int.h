/* wire_int.h - what the wire_*.c files share and nobody else needs. */
#ifndef LC_WIRE_INT_H
#define LC_WIRE_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#include "http1.h"
#include "jscan.h"
#include "wire.h"

static inline size_t lc_min_sz(size_t a, size_t b)
{
	return a < b ? a : b;
}

/* Copies n bytes into a fixed field and ends it; false (dst untouched) when it does not fit. */
static inline bool lc_copy_field(char *dst, size_t dstlen, const char *src, size_t n)
{
	if (n >= dstlen)
		return false;
	memcpy(dst, src, n);
	dst[n] = '\0';
	return true;
}

#endif
