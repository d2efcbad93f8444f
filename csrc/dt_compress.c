#include "dt_compress.h"

#include <lz4.h>

size_t dt_lz4_state_size(void) { return (size_t)LZ4_sizeofState(); }

size_t dt_lz4_bound(size_t n) { return (size_t)LZ4_compressBound((int)n); }

void dt_compress_blocks(void *state, int acceleration, size_t n, const uint8_t *const *src,
                        const uint32_t *len, uint8_t *const *dst, uint32_t *stored)
{
    for (size_t i = 0; i < n; i++) {
        stored[i] = 0;
        if (!dst[i])
            continue;
        /* A full-bound destination keeps lz4 on its fast, unchecked path. */
        int c = LZ4_compress_fast_extState(state, (const char *)src[i], (char *)dst[i], (int)len[i],
                                           LZ4_compressBound((int)len[i]), acceleration);
        if (c > 0 && (uint32_t)c < len[i])
            stored[i] = (uint32_t)c;
    }
}

void dt_frame_header(uint8_t out[DT_FRAME_HEADER], uint8_t flags, uint32_t original, uint32_t stored)
{
    out[0] = DT_FRAME_MAGIC & 0xFF;
    out[1] = DT_FRAME_MAGIC >> 8;
    out[2] = flags;
    out[3] = 0;
    for (int i = 0; i < 4; i++) {
        out[4 + i] = (uint8_t)(original >> (8 * i));
        out[8 + i] = (uint8_t)(stored >> (8 * i));
    }
}
