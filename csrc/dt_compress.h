/* lz4 block compression of many payloads in one call, and the 12-byte frame
 * header that says how each payload is stored:
 *   u16 magic 0x5A44 ("DZ"), u8 flags (1 = lz4), u8 reserved,
 *   u32 original size, u32 stored size       (little endian) */
#ifndef DT_COMPRESS_H
#define DT_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#define DT_FRAME_HEADER 12
#define DT_FRAME_MAGIC 0x5A44
#define DT_FRAME_LZ4 1

/* Bytes of scratch state dt_compress_blocks needs. */
size_t dt_lz4_state_size(void);

/* Worst-case lz4 output for n input bytes. */
size_t dt_lz4_bound(size_t n);

/* Compress block i (len[i] bytes at src[i]) into dst[i], which holds
 * dt_lz4_bound(len[i]) bytes, for every i with dst[i] != NULL.  stored[i]
 * receives the compressed size when it is smaller than the block, else 0
 * (the block goes raw). */
void dt_compress_blocks(void *state, int acceleration, size_t n, const uint8_t *const *src,
                        const uint32_t *len, uint8_t *const *dst, uint32_t *stored);

void dt_frame_header(uint8_t out[DT_FRAME_HEADER], uint8_t flags, uint32_t original,
                     uint32_t stored);

#endif
