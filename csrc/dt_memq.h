/* The memory queue: a ring buffer of variable-length records (packed op
 * batches) for several producer threads and one consumer at a time.
 *
 * Bounded in bytes (the ring, QMemoryBufferMax) and in ops (OpBufferSize,
 * 0 = none).  Producers copy in under a lock, in order; the consumer copies
 * out without taking it, so the two copies run in parallel.  Each record carries the
 * number of ops in it and whether it is replication (0) or mirror (1) data,
 * for the connection counters. */
#ifndef DT_MEMQ_H
#define DT_MEMQ_H

#include <stddef.h>
#include <stdint.h>

#include "dt_status.h"

#define DT_Q_REPLICATION 0
#define DT_Q_MIRROR 1
/* Per-record ring overhead: an 8-byte header, payload padded to 8. */
#define DT_MEMQ_RECORD_OVERHEAD 8
#define DT_MEMQ_MIN_CAPACITY 4096

typedef struct dt_memq dt_memq;

typedef struct dt_q_counts {
    uint64_t records;
    uint64_t ops[2], bytes[2];       /* queued now, by kind */
    uint64_t ops_hw[2], bytes_hw[2]; /* high-water marks */
    uint64_t pool_total, pool_used;  /* ring bytes; those held by records, headers included */
    uint64_t pushed, popped;         /* records in and out since creation */
} dt_q_counts;

/* A ring of `capacity` bytes (rounded up to 8) holding at most `max_ops` ops
 * (0 = no limit). */
int dt_memq_new(size_t capacity, uint64_t max_ops, dt_memq **out, dt_err *err);
void dt_memq_free(dt_memq *q);

/* The largest record this queue takes: half its ring, so that a record
 * always fits once the queue is empty, wherever the ring's end falls. */
size_t dt_memq_max_record(const dt_memq *q);

/* Push n records in order, waiting up to timeout_ns (< 0: forever, 0: not at
 * all) for room.  *pushed tells how many went in.  DT_E_TIMEOUT when not all
 * did, DT_E_CLOSED after close, DT_E_ARG for a record that can never fit. */
int dt_memq_push(dt_memq *q, size_t n, const uint8_t *const *rec, const uint32_t *len,
                 const uint32_t *ops, const uint8_t *kind, int64_t timeout_ns, size_t *pushed,
                 dt_err *err);

/* Wait up to timeout_ns for a record, then move up to max_records of them
 * (as many as fit in out_cap) into out, payloads back to back, filling len,
 * ops and kind per record.  DT_E_TIMEOUT with nothing moved; DT_E_CLOSED
 * when closed and empty; DT_E_SPACE when even the first record does not fit
 * (err->expected is its size). */
int dt_memq_pop(dt_memq *q, size_t max_records, uint8_t *out, size_t out_cap, uint32_t *len,
                uint32_t *ops, uint8_t *kind, int64_t timeout_ns, size_t *popped, size_t *used,
                dt_err *err);

/* Wake every waiter; later pushes fail, pops drain what is left. */
void dt_memq_close(dt_memq *q);
/* A closed queue drops what it still holds and gives its ring's pages back
 * to the kernel at once, rather than when it is freed; no-op while open. */
void dt_memq_release(dt_memq *q);

void dt_memq_counts(dt_memq *q, dt_q_counts *out);

/* Benchmark reference: one producer and one consumer thread move `records`
 * records of `size` bytes through a fresh queue in batches of `batch`;
 * returns the seconds it took, or a negative status. */
double dt_memq_bench_pair(size_t capacity, uint32_t size, size_t batch, uint64_t records);

#endif
