/* XXH3-64 (seed 0, default secret), written from the published xxHash
 * specification.  Bit-identical to the reference library's XXH3_64bits(). */
#ifndef DT_XXH3_H
#define DT_XXH3_H

#include <stddef.h>
#include <stdint.h>

enum dt_xxh3_impl { DT_XXH3_AUTO = 0, DT_XXH3_SCALAR = 1, DT_XXH3_SSE2 = 2, DT_XXH3_AVX2 = 3 };

uint64_t dt_xxh3_64(const uint8_t *data, size_t len);

/* Force one implementation of the long-input loop (tests compare them all).
 * Returns the implementation now in force; an unsupported request keeps AUTO. */
int dt_xxh3_select(int impl);

#endif
