/* Per-block strong checksums (XXH3-64) of a buffer or an open file. */
#ifndef DT_CHECKSUM_H
#define DT_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

#include "dt_status.h"

#define DT_BLOCK_MIN 1
#define DT_BLOCK_MAX 1048576

/* Number of blocks of `block` bytes covering `len` bytes (the last may be short). */
static inline uint64_t dt_block_count(uint64_t len, uint64_t block)
{
    return (len + block - 1) / block;
}

/* out[i] = XXH3-64 of block i of buf; `out` holds dt_block_count(len, block) values. */
int dt_checksum_buf(const uint8_t *buf, size_t len, size_t block, uint64_t *out, dt_err *err);

/* The same for `length` bytes of fd from `offset`, read sequentially through a
 * scratch buffer sized to stay in the CPU cache.  A file shorter than expected
 * fails with DT_E_IO (sys_errno 0) rather than hashing garbage. */
int dt_checksum_fd(int fd, uint64_t offset, uint64_t length, size_t block, uint64_t *out,
                   dt_err *err);

/* Reference passes the benchmarks measure kernels against. */
uint64_t dt_ref_sum64(const uint8_t *buf, size_t len);
int dt_ref_read_fd(int fd, uint64_t length, size_t chunk, dt_err *err);

#endif
