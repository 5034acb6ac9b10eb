/* fuzz.h - helpers shared by the libFuzzer targets in fuzz/ (one target per .c file).
 *
 * Every target feeds the bytes libFuzzer hands it to one of llmcap's parsers,
 * through the parser's public header only. The incremental parsers are fed
 * twice, once whole and once cut into pieces whose sizes come from the input
 * itself, and the two results must agree (a parser that answers differently
 * for a different split has a state bug even when it does not crash).
 */
#ifndef LC_FUZZ_H
#define LC_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* A property the code promises does not hold: report it as a crash (libFuzzer saves the input). */
#define FUZZ_CHECK(cond)                                                                         \
	do {                                                                                     \
		if (!(cond)) {                                                                   \
			fprintf(stderr, "%s:%d: fuzz property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort();                                                                 \
		}                                                                                \
	} while (0)

/* Piece sizes for the split feed: 1 to 64 bytes, drawn from a generator seeded by
 * the input's FNV-1a hash, so one input always splits the same way. */
struct fuzz_split {
	uint64_t x;
};

static inline void fuzz_split_init(struct fuzz_split *s, const uint8_t *d, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < n; i++)
		h = (h ^ d[i]) * 0x100000001b3ULL;
	s->x = h | 1;
}

static inline size_t fuzz_split_next(struct fuzz_split *s, size_t left)
{
	s->x ^= s->x << 13;   /* xorshift64 */
	s->x ^= s->x >> 7;
	s->x ^= s->x << 17;
	size_t k = 1 + (size_t)(s->x % 64);
	return k < left ? k : left;
}

#endif
