#define _GNU_SOURCE
#include "dt_memq.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "dt_qtime.h"

#define WRAP 0xFFFFFFFFu  /* header length of the filler before the ring's end */
#define SPIN_ROUNDS 4000  /* about 10-40 us of pause instructions */
#define PUBLISH_EVERY 256 /* records a producer copies before showing them */
#define EARLY_MAX (8u << 20) /* how far into the ring a steady stream goes before it starts over */

/* Producers hold `lock` while they reserve and copy, so they append in order;
 * the consumer never takes it on its fast path: it reads `tail`, copies, and
 * moves `head` with atomic stores.  `lock` and the condition variables are
 * only for sleeping, with the waiting flags read in sequentially consistent
 * order so that no wake-up is lost. */
struct dt_memq {
    pthread_mutex_t lock;
    pthread_mutex_t consumer; /* one consumer at a time */
    pthread_cond_t not_empty, not_full;
    int waiting_consumer, waiting_producers, closed;
    uint8_t *ring;
    uint64_t cap, max_ops;
    /* absolute byte positions; the ring offset is pos % cap */
    uint64_t head __attribute__((aligned(64)));
    uint64_t tail __attribute__((aligned(64)));
    uint64_t gap; /* ring bytes behind fillers the consumer has yet to pass */
    dt_q_counts c __attribute__((aligned(64)));
};

static inline uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }
static inline uint64_t load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }

static inline void put_header(uint8_t *at, uint32_t len, uint32_t meta)
{
    memcpy(at, &len, 4);
    memcpy(at + 4, &meta, 4);
}

/* A futex sleep and wake cost microseconds, a batch far less: poll briefly
 * before sleeping.  Returns once *pos != from or the spin budget is spent. */
static void spin_while(const uint64_t *pos, uint64_t from)
{
    for (int i = 0; i < SPIN_ROUNDS && load(pos) == from; i++) {
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
}

int dt_memq_new(size_t capacity, uint64_t max_ops, dt_memq **out, dt_err *err)
{
    if (capacity < DT_MEMQ_MIN_CAPACITY)
        return dt_fail(err, DT_E_ARG, "memory queue capacity too small", -1, -1, DT_MEMQ_MIN_CAPACITY,
                       (int64_t)capacity);
    dt_memq *q = aligned_alloc(64, pad8(sizeof(*q) + 63) / 64 * 64);
    if (!q)
        return dt_fail(err, DT_E_NOMEM, "cannot allocate the memory queue", -1, -1, sizeof(*q), 0);
    memset(q, 0, sizeof(*q));
    q->cap = pad8(capacity);
    q->ring = mmap(NULL, q->cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (q->ring == MAP_FAILED) {
        free(q);
        return dt_fail(err, DT_E_NOMEM, "cannot allocate the memory queue ring", -1, -1,
                       (int64_t)capacity, 0);
    }
    /* huge pages where the kernel offers them (THP in madvise mode): a ring
     * larger than the last-level cache otherwise spends its time on TLB misses */
    madvise(q->ring, q->cap, MADV_HUGEPAGE);
    /* nothing is touched up front: a ring costs memory (in huge-page faults)
     * only as records reach it, and a connection that queues nothing (a
     * mirror that finds no change) costs none; touching the first 16 MB
     * here took 14-45 ms of every command's start */
    q->max_ops = max_ops;
    pthread_mutex_init(&q->lock, NULL);
    pthread_mutex_init(&q->consumer, NULL);
    dt_cond_init(&q->not_empty);
    dt_cond_init(&q->not_full);
    q->c.pool_total = q->cap;
    *out = q;
    return DT_OK;
}

void dt_memq_free(dt_memq *q)
{
    if (!q)
        return;
    pthread_mutex_destroy(&q->lock);
    pthread_mutex_destroy(&q->consumer);
    pthread_cond_destroy(&q->not_empty);
    pthread_cond_destroy(&q->not_full);
    munmap(q->ring, q->cap);
    free(q);
}

size_t dt_memq_max_record(const dt_memq *q) { return q->cap / 2 - DT_MEMQ_RECORD_OVERHEAD; }

/* Whether a record of `need` ring bytes and `ops` ops fits after `tail`
 * (producer lock held; `ops` includes this batch's ops not yet counted);
 * writes the wrap filler when it must start at the
 * ring's beginning, and returns where it goes. */
static int make_room(dt_memq *q, uint64_t *tail, uint64_t need, uint64_t ops)
{
    uint64_t used = *tail - load(&q->head);
    uint64_t queued_ops = __atomic_load_n(&q->c.ops[0], __ATOMIC_RELAXED) +
                          __atomic_load_n(&q->c.ops[1], __ATOMIC_RELAXED);
    if (used && q->max_ops && queued_ops + ops > q->max_ops)
        return 0;
    uint64_t pos = *tail % q->cap, to_end = q->cap - pos, free_bytes = q->cap - used;
    /* While the consumer keeps up (little is queued), start over at the
     * ring's beginning once `early` bytes into it: a steady stream then
     * reuses a few pages instead of touching, and keeping resident, every
     * page of a large ring.  Not behind a backlog: until the consumer passes
     * the filler, the room is only what lies before pos. */
    uint64_t early = q->cap / 8 < EARLY_MAX ? q->cap / 8 : EARLY_MAX;
    int restart = pos >= early && used <= early / 2 && used + need <= pos;
    if (need <= to_end && !restart)
        return need <= free_bytes;
    if (need + to_end > free_bytes)
        return 0;
    put_header(q->ring + pos, WRAP, 0);
    __atomic_add_fetch(&q->gap, to_end, __ATOMIC_RELAXED);
    *tail += to_end;
    return 1;
}

int dt_memq_push(dt_memq *q, size_t n, const uint8_t *const *rec, const uint32_t *len,
                 const uint32_t *ops, const uint8_t *kind, int64_t timeout_ns, size_t *pushed,
                 dt_err *err)
{
    struct timespec dl;
    if (timeout_ns > 0)
        dt_deadline(&dl, timeout_ns);
    int rc = DT_OK;
    size_t i = 0;
    uint64_t add_ops[2] = {0, 0}, add_bytes[2] = {0, 0}, add_records = 0;
    pthread_mutex_lock(&q->lock);
    uint64_t tail = q->tail;
    for (; i < n; i++) {
        uint64_t need = DT_MEMQ_RECORD_OVERHEAD + pad8(len[i]);
        if (len[i] > dt_memq_max_record(q)) {
            rc = dt_fail(err, DT_E_ARG, "record larger than half the memory queue", (int64_t)i, -1,
                         (int64_t)dt_memq_max_record(q), len[i]);
            break;
        }
        int timed_out = 0;
        while (!q->closed && !make_room(q, &tail, need, ops[i] + add_ops[0] + add_ops[1])) {
            if (timeout_ns == 0 || timed_out) {
                rc = DT_E_TIMEOUT;
                break;
            }
            /* show what is copied so far, then sleep until the consumer frees room */
            __atomic_store_n(&q->tail, tail, __ATOMIC_SEQ_CST);
            if (q->waiting_consumer)
                pthread_cond_signal(&q->not_empty);
            __atomic_store_n(&q->waiting_producers, q->waiting_producers + 1, __ATOMIC_SEQ_CST);
            if (!make_room(q, &tail, need, ops[i] + add_ops[0] + add_ops[1])) {
                timed_out = dt_cond_wait(&q->not_full, &q->lock, timeout_ns > 0 ? &dl : NULL);
                __atomic_store_n(&q->waiting_producers, q->waiting_producers - 1, __ATOMIC_SEQ_CST);
                tail = q->tail; /* other producers may have appended while we slept */
            } else {
                __atomic_store_n(&q->waiting_producers, q->waiting_producers - 1, __ATOMIC_SEQ_CST);
                break;
            }
        }
        if (rc != DT_OK)
            break;
        if (q->closed) {
            rc = dt_fail(err, DT_E_CLOSED, "the memory queue is closed", (int64_t)i, -1, 0, 0);
            break;
        }
        uint8_t *at = q->ring + tail % q->cap;
        uint32_t k = kind[i] ? 1 : 0;
        put_header(at, len[i], ops[i] << 1 | k);
        memcpy(at + DT_MEMQ_RECORD_OVERHEAD, rec[i], len[i]);
        tail += need;
        add_ops[k] += ops[i];
        add_bytes[k] += len[i];
        add_records++;
        if ((i & (PUBLISH_EVERY - 1)) == PUBLISH_EVERY - 1) {
            __atomic_store_n(&q->tail, tail, __ATOMIC_SEQ_CST);
            /* a sleeping consumer set its flag under the lock we hold */
            if (q->waiting_consumer)
                pthread_cond_signal(&q->not_empty);
        }
    }
    /* counters first, so that a pop never takes them below zero */
    for (int k = 0; k < 2; k++) {
        uint64_t o = __atomic_add_fetch(&q->c.ops[k], add_ops[k], __ATOMIC_RELAXED);
        uint64_t b = __atomic_add_fetch(&q->c.bytes[k], add_bytes[k], __ATOMIC_RELAXED);
        if (o > q->c.ops_hw[k])
            q->c.ops_hw[k] = o;
        if (b > q->c.bytes_hw[k])
            q->c.bytes_hw[k] = b;
    }
    __atomic_add_fetch(&q->c.records, add_records, __ATOMIC_RELAXED);
    __atomic_add_fetch(&q->c.pushed, add_records, __ATOMIC_RELAXED);
    __atomic_store_n(&q->tail, tail, __ATOMIC_SEQ_CST);
    if (i && q->waiting_consumer)
        pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
    *pushed = i;
    return rc;
}

int dt_memq_pop(dt_memq *q, size_t max_records, uint8_t *out, size_t out_cap, uint32_t *len,
                uint32_t *ops, uint8_t *kind, int64_t timeout_ns, size_t *popped, size_t *used,
                dt_err *err)
{
    struct timespec dl;
    if (timeout_ns > 0)
        dt_deadline(&dl, timeout_ns);
    *popped = *used = 0;
    pthread_mutex_lock(&q->consumer);
    uint64_t p = q->head, end = load(&q->tail);
    if (p == end && timeout_ns != 0) {
        spin_while(&q->tail, p);
        end = load(&q->tail);
    }
    if (p == end) {
        int rc = DT_OK, timed_out = 0;
        pthread_mutex_lock(&q->lock);
        for (;;) {
            __atomic_store_n(&q->waiting_consumer, 1, __ATOMIC_SEQ_CST);
            end = __atomic_load_n(&q->tail, __ATOMIC_SEQ_CST);
            if (p != end)
                break;
            if (q->closed) {
                rc = dt_fail(err, DT_E_CLOSED, "the memory queue is closed and empty", -1, -1, 0, 0);
                break;
            }
            if (timeout_ns == 0 || timed_out) {
                rc = DT_E_TIMEOUT;
                break;
            }
            timed_out = dt_cond_wait(&q->not_empty, &q->lock, timeout_ns > 0 ? &dl : NULL);
        }
        __atomic_store_n(&q->waiting_consumer, 0, __ATOMIC_SEQ_CST);
        pthread_mutex_unlock(&q->lock);
        if (rc != DT_OK) {
            pthread_mutex_unlock(&q->consumer);
            return rc;
        }
    }
    size_t k = 0, bytes = 0;
    uint64_t gone_ops[2] = {0, 0}, gone_bytes[2] = {0, 0};
    int rc = DT_OK;
    while (p < end && k < max_records) {
        const uint8_t *at = q->ring + p % q->cap;
        uint32_t l, meta;
        memcpy(&l, at, 4);
        if (l == WRAP) {
            uint64_t skip = q->cap - p % q->cap;
            __atomic_sub_fetch(&q->gap, skip, __ATOMIC_RELAXED);
            p += skip;
            continue;
        }
        if (bytes + l > out_cap) {
            if (k == 0)
                rc = dt_fail(err, DT_E_SPACE, "pop buffer smaller than the next record", 0, -1, l,
                             (int64_t)out_cap);
            break;
        }
        memcpy(&meta, at + 4, 4);
        memcpy(out + bytes, at + DT_MEMQ_RECORD_OVERHEAD, l);
        len[k] = l;
        ops[k] = meta >> 1;
        kind[k] = meta & 1;
        gone_ops[meta & 1] += meta >> 1;
        gone_bytes[meta & 1] += l;
        bytes += l;
        k++;
        p += DT_MEMQ_RECORD_OVERHEAD + pad8(l);
    }
    if (rc == DT_OK && p < end) { /* a filler next is passed now: the room behind it frees at once */
        uint32_t l;
        memcpy(&l, q->ring + p % q->cap, 4);
        if (l == WRAP) {
            uint64_t skip = q->cap - p % q->cap;
            __atomic_sub_fetch(&q->gap, skip, __ATOMIC_RELAXED);
            p += skip;
        }
    }
    if (k) {
        for (int i = 0; i < 2; i++) {
            __atomic_sub_fetch(&q->c.ops[i], gone_ops[i], __ATOMIC_RELAXED);
            __atomic_sub_fetch(&q->c.bytes[i], gone_bytes[i], __ATOMIC_RELAXED);
        }
        __atomic_sub_fetch(&q->c.records, k, __ATOMIC_RELAXED);
        __atomic_add_fetch(&q->c.popped, k, __ATOMIC_RELAXED);
    }
    if (rc == DT_OK) {
        __atomic_store_n(&q->head, p, __ATOMIC_SEQ_CST);
        if (__atomic_load_n(&q->waiting_producers, __ATOMIC_SEQ_CST)) {
            pthread_mutex_lock(&q->lock);
            pthread_cond_broadcast(&q->not_full);
            pthread_mutex_unlock(&q->lock);
        }
    }
    pthread_mutex_unlock(&q->consumer);
    *popped = k;
    *used = bytes;
    return rc;
}

void dt_memq_close(dt_memq *q)
{
    pthread_mutex_lock(&q->lock);
    q->closed = 1;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

void dt_memq_release(dt_memq *q)
{
    pthread_mutex_lock(&q->consumer);
    pthread_mutex_lock(&q->lock);
    if (q->closed) {
        __atomic_store_n(&q->head, load(&q->tail), __ATOMIC_RELEASE);
        __atomic_store_n(&q->gap, 0, __ATOMIC_RELAXED);
        q->c.records = 0;
        for (int k = 0; k < 2; k++)
            q->c.ops[k] = q->c.bytes[k] = 0;
        /* the pages go back now; touched again, they read as zeros */
        madvise(q->ring, q->cap, MADV_DONTNEED);
    }
    pthread_mutex_unlock(&q->lock);
    pthread_mutex_unlock(&q->consumer);
}

void dt_memq_counts(dt_memq *q, dt_q_counts *out)
{
    pthread_mutex_lock(&q->lock);
    *out = q->c;
    /* fillers are skipped, not held: they do not count as queued bytes */
    uint64_t used = load(&q->tail) - load(&q->head), gap = load(&q->gap);
    out->pool_used = used > gap ? used - gap : 0;
    pthread_mutex_unlock(&q->lock);
}

typedef struct {
    dt_memq *q;
    uint32_t size;
    size_t batch;
    uint64_t records;
} bench_arg;

static void *bench_producer(void *arg)
{
    bench_arg *a = arg;
    uint8_t *payload = calloc(1, a->size ? a->size : 1);
    const uint8_t **rec = malloc(a->batch * sizeof(*rec));
    uint32_t *len = malloc(a->batch * sizeof(uint32_t)), *ops = malloc(a->batch * sizeof(uint32_t));
    uint8_t *kind = calloc(a->batch, 1);
    for (size_t i = 0; i < a->batch; i++) {
        rec[i] = payload;
        len[i] = a->size;
        ops[i] = 1;
    }
    for (uint64_t sent = 0; sent < a->records;) {
        size_t n = a->records - sent < a->batch ? (size_t)(a->records - sent) : a->batch, done;
        dt_memq_push(a->q, n, rec, len, ops, kind, -1, &done, NULL);
        sent += done;
    }
    free(payload);
    free(rec);
    free(len);
    free(ops);
    free(kind);
    return NULL;
}

double dt_memq_bench_pair(size_t capacity, uint32_t size, size_t batch, uint64_t records)
{
    dt_memq *q;
    if (dt_memq_new(capacity, 0, &q, NULL) != DT_OK)
        return DT_E_NOMEM;
    size_t cap = batch * ((size_t)size + 8);
    uint8_t *out = malloc(cap);
    uint32_t *len = malloc(batch * sizeof(uint32_t)), *ops = malloc(batch * sizeof(uint32_t));
    uint8_t *kind = malloc(batch);
    bench_arg a = {q, size, batch, records};
    double t0 = dt_now();
    pthread_t th;
    pthread_create(&th, NULL, bench_producer, &a);
    for (uint64_t got = 0; got < records;) {
        size_t n, used;
        dt_memq_pop(q, batch, out, cap, len, ops, kind, -1, &n, &used, NULL);
        got += n;
    }
    pthread_join(th, NULL);
    double t = dt_now() - t0;
    free(out);
    free(len);
    free(ops);
    free(kind);
    dt_memq_free(q);
    return t;
}
