/* Rolling delta: match blocks of a target file at any byte offset of the
 * source file (rsync's idea), so an insertion costs only its own bytes. */
#ifndef DT_DELTA_H
#define DT_DELTA_H

#include <stddef.h>
#include <stdint.h>

#include "dt_status.h"

/* One instruction: copy `length` bytes from target offset `target_offset`, or,
 * when target_offset is -1, take the next `length` bytes of the literals. */
typedef struct dt_insn {
    int64_t target_offset;
    int64_t length;
} dt_insn;

/* Weak rolling sum of one block: low 32 bits sum of bytes, high 32 bits the
 * position-weighted sum, both modulo 2^32. */
uint64_t dt_weak_block(const uint8_t *p, size_t len);

/* weak[i], strong[i] for every block of buf (the last may be short). */
int dt_signature_buf(const uint8_t *buf, size_t len, size_t block, uint64_t *weak, uint64_t *strong,
                     dt_err *err);

/* Delta of `src` against a target described by its signature.  On success
 * *insns is a malloc'ed array of *ninsns instructions (the caller frees it
 * with free()) and *literal_bytes is the total literal length.  Literal runs
 * are taken from src in order: dt_delta_gather() copies them out. */
int dt_delta_build(const uint64_t *weak, const uint64_t *strong, size_t nblocks, uint64_t target_size,
                   size_t block, const uint8_t *src, size_t src_len, dt_insn **insns, size_t *ninsns,
                   uint64_t *literal_bytes, dt_err *err);

/* Copy the literal runs of a delta built over src into `out` (literal_bytes long). */
void dt_delta_gather(const dt_insn *insns, size_t ninsns, const uint8_t *src, uint8_t *out);

/* Check that the instructions stay inside the target and the literals and
 * rebuild exactly out_len bytes; nothing is read or written. */
int dt_delta_check(size_t target_len, const dt_insn *insns, size_t ninsns, size_t literals_len,
                   size_t out_len, dt_err *err);

/* Rebuild the source into `out` (out_len bytes) from the target and the
 * instructions, after dt_delta_check() has passed over all of them. */
int dt_delta_apply(const uint8_t *target, size_t target_len, const dt_insn *insns, size_t ninsns,
                   const uint8_t *literals, size_t literals_len, uint8_t *out, size_t out_len,
                   dt_err *err);

#endif
