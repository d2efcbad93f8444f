/* Write-op merging: writes to one file that touch or overlap become ops of at
 * most max_chunk bytes, newest bytes winning.  Applying the output batch gives
 * the same files as applying the input batch.
 *
 * Ordering rules that make this safe:
 *  - a truncate or set-attributes op on a file first emits that file's merged
 *    writes (they were older);
 *  - create, delete, rename, mkdir and rmdir change the namespace, so every
 *    pending write is emitted before them;
 *  - a write whose path differs from its file's pending writes emits those
 *    first.
 * Writes made moot are not sent: the bytes a later truncate cuts off, and
 * every write to a file deleted before any other namespace op followed its
 * create (no other name can share such a file's data).
 * Writes to different files commute, and merged extents of one file never
 * overlap, so the order in which pending extents are emitted does not matter.
 * A merged write carries the highest sequence number among its sources. */
#ifndef DT_MERGE_H
#define DT_MERGE_H

#include <stddef.h>
#include <stdint.h>

#include "dt_ops.h"
#include "dt_status.h"

#define DT_CHUNK_MIN 1
#define DT_CHUNK_MAX 131072

/* Output capacity that always suffices for merging a batch with this info. */
size_t dt_merge_bound(size_t in_len, const dt_batch_info *info, uint32_t max_chunk);

/* Merge a batch already checked by dt_batch_scan.  out must hold
 * dt_merge_bound() bytes; *out_len receives the size used. */
int dt_merge(const uint8_t *in, size_t in_len, const dt_batch_info *info, uint32_t max_chunk,
             uint8_t *out, size_t out_cap, size_t *out_len, dt_err *err);

#endif
