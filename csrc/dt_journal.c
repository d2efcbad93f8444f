#define _GNU_SOURCE
#include "dt_journal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sched.h>
#include <unistd.h>

#include "dt_crc32c.h"
#include "dt_qtime.h"

#define SEG_HEADER 32
#define REC_HEADER 24
#define REC_MARKER 0x52515444u /* "DTQR" */
#define MAX_RECORD (1u << 30)
#define WBUF_FLUSH (1u << 20)
/* Records from this size on are written from the caller's buffer rather
 * than copied into wbuf (see gather). */
#define DIRECT_RECORD (16u << 10)
#define FIRST_SEGNO ((uint64_t)1 << 32) /* room below for prepended segments */
#define FIRST_SEQ ((uint64_t)1 << 40)
static const char SEG_MAGIC[8] = {'D', 'T', 'Q', 'S', 'E', 'G', '0', '1'};
static const char POS_MAGIC[8] = {'D', 'T', 'Q', 'P', 'O', 'S', '0', '1'};

typedef struct {
    int fd;
    uint64_t segno, off, end; /* next record at off; valid bytes end at end */
    uint8_t *buf;
    size_t cap, blen;
    uint64_t boff; /* file offset of buf[0] */
} seg_reader;

typedef struct {
    uint32_t len, meta;
    uint64_t seq, off;
    const uint8_t *payload;
} rec_view;

struct dt_journal {
    dt_journal_cfg cfg;
    char dir[4096];
    int dirfd;
    pthread_mutex_t lock;
    pthread_cond_t synced;
    /* writer */
    int wfd;
    uint64_t w_segno, w_size, next_seq, durable_seq;
    uint8_t *wbuf;
    size_t wlen, wcap;
    int leading, syncing, gathering;
    pthread_cond_t joined;  /* a push arrived while a leader gathers */
    uint32_t calls_pending; /* write-through pushes not yet in a sync */
    uint32_t group_hint;    /* pushes the last sync served */
    double last_sync_s;
    /* reader */
    seg_reader r;
    uint64_t r_seq, first_segno;
    dt_journal_counts c;
};

/* Fields that group commit polls without the lock (see sync_through) are
 * written under it with release stores and read with acquire loads. */
#define PEEK(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define POKE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static inline uint64_t pad8(uint64_t n) { return (n + 7) & ~(uint64_t)7; }
static inline void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static inline void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }
static inline uint32_t get32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t get64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static int io_fail(dt_err *err, const char *what, uint64_t segno, uint64_t off)
{
    int e = errno;
    int code = e == ENOSPC || e == EDQUOT ? DT_E_DISKFULL : DT_E_IO;
    dt_fail(err, code, what, (int64_t)segno, (int64_t)off, 0, 0);
    if (err)
        err->sys_errno = e;
    return code;
}

static void seg_name(char *out, uint64_t segno) { sprintf(out, "dtq%016" PRIx64 ".seg", segno); }

/* pwritev all of iov[0..n), resuming after short writes; iov is consumed. */
static int writev_all(int fd, struct iovec *iov, int n, uint64_t off)
{
    while (n) {
        ssize_t w = pwritev(fd, iov, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        off += (uint64_t)w;
        while (n && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    struct iovec one = {(void *)p, n};
    return writev_all(fd, &one, n ? 1 : 0, off);
}

static int read_full(int fd, uint8_t *p, size_t n, uint64_t off, size_t *got)
{
    *got = 0;
    while (*got < n) {
        ssize_t r = pread(fd, p + *got, n - *got, (off_t)(off + *got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return 0;
}

static void seg_header(uint8_t *h, uint64_t segno, uint64_t first_seq)
{
    memset(h, 0, SEG_HEADER);
    memcpy(h, SEG_MAGIC, 8);
    put64(h + 8, segno);
    put64(h + 16, first_seq);
    put32(h + 24, dt_crc32c(0, h, 24));
}

/* The REC_HEADER bytes that frame a record of src. */
static void frame_header(uint8_t *h, const uint8_t *src, uint32_t len, uint32_t meta, uint64_t seq)
{
    put32(h, len);
    put32(h + 4, meta);
    put64(h + 8, seq);
    put32(h + 16, dt_crc32c(dt_crc32c(0, h, 16), src, len));
    put32(h + 20, REC_MARKER);
}

/* Frame one record at dst (REC_HEADER + pad8(len) bytes). */
static size_t frame(uint8_t *dst, const uint8_t *src, uint32_t len, uint32_t meta, uint64_t seq)
{
    frame_header(dst, src, len, meta, seq);
    memcpy(dst + REC_HEADER, src, len);
    size_t size = REC_HEADER + pad8(len);
    memset(dst + REC_HEADER + len, 0, size - REC_HEADER - len);
    return size;
}

/* ---- reading ---- */

/* Make buf hold [off, off + need); 0, or -1 on a read error. */
static int fill(seg_reader *r, uint64_t off, size_t need)
{
    if (off >= r->boff && off + need <= r->boff + r->blen)
        return 0;
    size_t want = need > (1u << 20) ? need : (1u << 20);
    if (want > r->end - off)
        want = (size_t)(r->end - off);
    if (want > r->cap) {
        uint8_t *b = realloc(r->buf, want);
        if (!b)
            return -2;
        r->buf = b;
        r->cap = want;
    }
    size_t got;
    if (read_full(r->fd, r->buf, want, off, &got))
        return -1;
    r->boff = off;
    r->blen = got;
    return got >= need ? 0 : -1;
}

enum { REC_END = 0, REC_OK = 1, REC_BAD = -1, REC_IO = -2, REC_NOMEM = -3 };

/* The record at off, checked; REC_BAD when it is damaged or cut short. */
static int record_at(seg_reader *r, uint64_t off, rec_view *v)
{
    if (off == r->end)
        return REC_END;
    if (off + REC_HEADER > r->end)
        return REC_BAD;
    int f = fill(r, off, REC_HEADER);
    if (f)
        return f == -2 ? REC_NOMEM : REC_IO;
    const uint8_t *h = r->buf + (off - r->boff);
    static const uint8_t zero[REC_HEADER];
    if (!memcmp(h, zero, REC_HEADER)) /* preallocated space not yet written */
        return REC_END;
    uint32_t len = get32(h);
    if (get32(h + 20) != REC_MARKER || len > MAX_RECORD || off + REC_HEADER + pad8(len) > r->end)
        return REC_BAD;
    f = fill(r, off, REC_HEADER + (size_t)pad8(len));
    if (f)
        return f == -2 ? REC_NOMEM : REC_IO;
    h = r->buf + (off - r->boff);
    if (dt_crc32c(dt_crc32c(0, h, 16), h + REC_HEADER, len) != get32(h + 16))
        return REC_BAD;
    v->len = len;
    v->meta = get32(h + 4);
    v->seq = get64(h + 8);
    v->off = off;
    v->payload = h + REC_HEADER;
    return REC_OK;
}

/* Whether any intact record lies after a damaged one at bad_off (scanned a
 * megabyte at a time: a preallocated tail can be megabytes of zeros). */
static int intact_after(seg_reader *r, uint64_t bad_off)
{
    enum { CHUNK = 1 << 20 };
    uint8_t *buf = malloc(CHUNK + REC_HEADER);
    if (!buf)
        return 1; /* cannot tell: call it corruption rather than truncate */
    int found = 0;
    for (uint64_t base = bad_off + 8; !found && base + REC_HEADER <= r->end; base += CHUNK) {
        size_t got;
        size_t want = CHUNK + REC_HEADER;
        if (read_full(r->fd, buf, want, base, &got))
            break;
        for (size_t i = 0; i + REC_HEADER <= got && i < CHUNK; i += 8) {
            rec_view v;
            if (get32(buf + i + 20) == REC_MARKER && record_at(r, base + i, &v) == REC_OK) {
                found = 1;
                break;
            }
        }
    }
    free(buf);
    return found;
}

static int open_segment(dt_journal *j, seg_reader *r, uint64_t segno, uint64_t *first_seq, int flags)
{
    char name[64];
    seg_name(name, segno);
    int fd = openat(j->dirfd, name, flags | O_CLOEXEC);
    if (fd < 0)
        return -1;
    struct stat st;
    uint8_t h[SEG_HEADER];
    size_t got;
    if (fstat(fd, &st) || read_full(fd, h, SEG_HEADER, 0, &got) || got < SEG_HEADER ||
        memcmp(h, SEG_MAGIC, 8) || get64(h + 8) != segno || get32(h + 24) != dt_crc32c(0, h, 24)) {
        close(fd);
        errno = EBADMSG;
        return -1;
    }
    if (r->fd >= 0)
        close(r->fd);
    r->fd = fd;
    r->segno = segno;
    r->off = SEG_HEADER;
    r->end = (uint64_t)st.st_size;
    r->blen = 0;
    *first_seq = get64(h + 16);
    return 0;
}

/* ---- position ---- */

static int write_pos(dt_journal *j, uint64_t seq, uint64_t segno, uint64_t off, dt_err *err)
{
    uint8_t p[40] = {0};
    memcpy(p, POS_MAGIC, 8);
    put64(p + 8, seq);
    put64(p + 16, segno);
    put64(p + 24, off);
    put32(p + 32, dt_crc32c(0, p, 32));
    int fd = openat(j->dirfd, "dtq.pos.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return io_fail(err, "cannot write the queue position", segno, off);
    if (write_all(fd, p, sizeof p, 0) || fdatasync(fd)) {
        close(fd);
        return io_fail(err, "cannot write the queue position", segno, off);
    }
    close(fd);
    if (renameat(j->dirfd, "dtq.pos.tmp", j->dirfd, "dtq.pos") || fsync(j->dirfd))
        return io_fail(err, "cannot write the queue position", segno, off);
    return DT_OK;
}

static int read_pos(dt_journal *j, uint64_t *seq, uint64_t *segno, uint64_t *off)
{
    int fd = openat(j->dirfd, "dtq.pos", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint8_t p[40];
    size_t got;
    int ok = !read_full(fd, p, sizeof p, 0, &got) && got == sizeof p && !memcmp(p, POS_MAGIC, 8) &&
             get32(p + 32) == dt_crc32c(0, p, 32);
    close(fd);
    if (!ok)
        return -1;
    *seq = get64(p + 8);
    *segno = get64(p + 16);
    *off = get64(p + 24);
    return 1;
}

/* Delete segments the committed position has left behind. */
static void drop_consumed(dt_journal *j, uint64_t upto)
{
    char name[64];
    for (; j->first_segno < upto; j->first_segno++) {
        seg_name(name, j->first_segno);
        struct stat st;
        if (!fstatat(j->dirfd, name, &st, 0) && !unlinkat(j->dirfd, name, 0)) {
            j->c.disk_bytes -= (uint64_t)st.st_size;
            j->c.segments--;
        }
    }
}

static int commit_locked(dt_journal *j, dt_err *err)
{
    int rc = write_pos(j, j->r_seq, j->r.segno, j->r.off, err);
    if (rc == DT_OK)
        drop_consumed(j, j->r.segno);
    return rc;
}

/* ---- writing ---- */

/* Fill a write-through segment with zeros up front, so that later syncs
 * flush data only: overwriting allocated blocks leaves the file's size and
 * extents alone, which an append (or fallocate's unwritten extents) would not. */
static int preallocate(int fd, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[1 << 16];
    for (uint64_t off = from; off < to;) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        if (write_all(fd, zeros, n, off))
            return -1;
        off += n;
    }
    return 0;
}

static int new_segment(dt_journal *j, uint64_t segno, uint64_t first_seq, int prealloc,
                       int *fd_out, dt_err *err)
{
    char name[64];
    seg_name(name, segno);
    int fd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t h[SEG_HEADER];
    seg_header(h, segno, first_seq);
    if (fd < 0 || write_all(fd, h, SEG_HEADER, 0) ||
        (prealloc && preallocate(fd, SEG_HEADER, j->cfg.segment_bytes)) ||
        (j->cfg.write_through && (fdatasync(fd) || fsync(j->dirfd)))) {
        int rc = io_fail(err, "cannot create a queue segment", segno, 0);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    *fd_out = fd;
    j->c.segments++;
    j->c.disk_bytes += SEG_HEADER;
    return DT_OK;
}

static int flush_wbuf(dt_journal *j, dt_err *err)
{
    if (!j->wlen)
        return DT_OK;
    if (write_all(j->wfd, j->wbuf, j->wlen, j->w_size))
        return io_fail(err, "cannot write the queue log file", j->w_segno, j->w_size);
    j->w_size += j->wlen;
    if (j->r.segno == j->w_segno)
        j->r.end = j->w_size;
    j->wlen = 0;
    return DT_OK;
}

/* Large records of one push, written from the caller's buffers by one
 * pwritev (after what wbuf held), headers and padding in between: no copy,
 * and writes as large as wbuf's, since the page cache takes unaligned 64 KiB
 * writes far slower than 1 MiB ones.  Records are counted as they are
 * gathered; a failed write restores the counters and the sequence. */
#define GATHER_RECORDS 64
typedef struct {
    struct iovec iov[1 + 3 * GATHER_RECORDS];
    uint8_t hdr[GATHER_RECORDS][REC_HEADER];
    int n, records, has_wbuf;
    uint64_t bytes; /* excluding wbuf's */
    size_t first;   /* index in the push of the first gathered record */
    dt_journal_counts saved_c;
    uint64_t saved_seq;
} gather;

static void gather_add(dt_journal *j, gather *g, size_t i, const uint8_t *src, uint32_t len,
                       uint32_t meta)
{
    static const uint8_t zeros[8];
    if (!g->records) {
        g->first = i;
        g->saved_c = j->c;
        g->saved_seq = j->next_seq;
        g->has_wbuf = j->wlen > 0;
        if (g->has_wbuf)
            g->iov[g->n++] = (struct iovec){j->wbuf, j->wlen};
    }
    uint8_t *h = g->hdr[g->records++];
    frame_header(h, src, len, meta, j->next_seq++);
    g->iov[g->n++] = (struct iovec){h, REC_HEADER};
    g->iov[g->n++] = (struct iovec){(void *)src, len};
    if (pad8(len) != len)
        g->iov[g->n++] = (struct iovec){(void *)zeros, (size_t)(pad8(len) - len)};
    g->bytes += REC_HEADER + pad8(len);
}

/* Write what is gathered; on failure *i goes back to the first record gathered. */
static int gather_flush(dt_journal *j, gather *g, size_t *i, dt_err *err)
{
    if (!g->records)
        return DT_OK;
    uint64_t size = g->bytes + (g->has_wbuf ? j->wlen : 0);
    int rc = DT_OK;
    if (writev_all(j->wfd, g->iov, g->n, j->w_size)) {
        rc = io_fail(err, "cannot write the queue log file", j->w_segno, j->w_size);
        /* a short write may have left whole records that were never counted:
         * cut them, so that a reopen cannot find them (best effort: the
         * write's error is the one reported) */
        int e = errno;
        if (ftruncate(j->wfd, (off_t)j->w_size))
            errno = e;
        j->c = g->saved_c;
        j->next_seq = g->saved_seq;
        *i = g->first;
    } else {
        j->w_size += size;
        if (j->r.segno == j->w_segno)
            j->r.end = j->w_size;
        if (g->has_wbuf)
            j->wlen = 0;
    }
    g->n = g->records = g->has_wbuf = 0;
    g->bytes = 0;
    return rc;
}

static int roll(dt_journal *j, dt_err *err)
{
    if (j->w_segno + 1 - j->first_segno >= DT_J_MAX_SEGMENTS)
        return dt_fail(err, DT_E_LIMIT, "the queue holds the most segment files it may",
                       -1, -1, DT_J_MAX_SEGMENTS, (int64_t)(j->w_segno + 1 - j->first_segno));
    while (j->syncing) /* a group commit is syncing this segment's fd */
        pthread_cond_wait(&j->synced, &j->lock);
    int rc = flush_wbuf(j, err);
    if (rc)
        return rc;
    if (j->cfg.write_through) {
        if (fdatasync(j->wfd))
            return io_fail(err, "cannot sync the queue log file", j->w_segno, j->w_size);
        POKE(j->durable_seq, j->next_seq - 1);
    }
    int fd;
    rc = new_segment(j, j->w_segno + 1, j->next_seq, j->cfg.write_through, &fd, err);
    if (rc)
        return rc;
    /* the unused preallocated tail goes; if this is lost in a crash,
     * recovery reads the zeros as the end and truncates them then */
    if (j->cfg.write_through && ftruncate(j->wfd, (off_t)j->w_size)) {
        close(fd);
        return io_fail(err, "cannot trim a queue segment", j->w_segno, j->w_size);
    }
    close(j->wfd);
    j->wfd = fd;
    j->w_segno++;
    j->w_size = SEG_HEADER;
    return DT_OK;
}

static int reserve_wbuf(dt_journal *j, size_t more)
{
    uint8_t *b = dt_grow(j->wbuf, &j->wcap, j->wlen + more, 1, WBUF_FLUSH);
    if (!b)
        return -1;
    j->wbuf = b;
    return 0;
}

/* Group commit: one pusher at a time leads; it gathers, writes out and syncs
 * for everyone, while the others follow, waiting for their sequence to
 * become durable.  Before syncing, the leader gives the pushers of the last
 * round (those it served and those that arrived during it) a window as long
 * as that sync took, at most 1 ms, to join: they were just released and are
 * usually on their way back with their next record.  A lone producer never
 * waits.
 *
 * Both waits poll for up to POLL_S, yielding the CPU and without the lock,
 * before they sleep: a sync takes about 100 us, and on a virtual machine a
 * futex wake-up costs tens of microseconds, paid once per pusher per round
 * when each had to take the lock (or be woken) to learn its record was
 * durable.  Sleeping instead (a condition variable while gathering, or a
 * short nanosleep) made rounds slower, not cheaper.
 *
 * The round goes out through the page cache.  Starting each pusher's
 * writeback early (sync_file_range) was slower, since fdatasync waits for
 * every page under writeback, later rounds' too.  O_DIRECT made a round a
 * little cheaper but is not used: the consumer reads the same segment through
 * the page cache, and mixing the two risks stale pages. */
#define POLL_S 300e-6

static double min_d(double a, double b) { return a < b ? a : b; }

/* Wait, the lock held on entry, while another pusher leads.  Returns 1, the
 * lock released, once seq is durable; 0, the lock held, when the leader has
 * stopped short of seq (so this pusher may lead next). */
static int follow(dt_journal *j, uint64_t seq)
{
    double until = dt_now() + POLL_S;
    pthread_mutex_unlock(&j->lock);
    while (PEEK(j->leading) && PEEK(j->durable_seq) < seq && dt_now() < until)
        sched_yield();
    if (PEEK(j->durable_seq) >= seq)
        return 1;
    pthread_mutex_lock(&j->lock);
    while (j->leading && j->durable_seq < seq)
        pthread_cond_wait(&j->synced, &j->lock);
    if (j->durable_seq < seq)
        return 0;
    pthread_mutex_unlock(&j->lock);
    return 1;
}

/* Give the last round's pushers until `window` from now to join. */
static void gather_round(dt_journal *j, double window)
{
    double start = dt_now(), poll_until = start + min_d(window, POLL_S);
    uint32_t hint = j->group_hint;
    pthread_mutex_unlock(&j->lock);
    while (PEEK(j->calls_pending) < hint && dt_now() < poll_until)
        sched_yield();
    pthread_mutex_lock(&j->lock);
    if (j->calls_pending >= hint || window <= POLL_S)
        return;
    struct timespec dl;
    dt_deadline(&dl, (int64_t)((window - (dt_now() - start)) * 1e9));
    j->gathering = 1;
    while (j->calls_pending < hint && !dt_cond_wait(&j->joined, &j->lock, &dl))
        ;
    j->gathering = 0;
}

/* Make records up to seq durable; the lock held on entry, released on return. */
static int sync_through(dt_journal *j, uint64_t seq, dt_err *err)
{
    int rc = DT_OK, led = 0;
    while (j->durable_seq < seq) {
        if (j->leading) {
            if (follow(j, seq))
                return DT_OK;
            continue;
        }
        POKE(j->leading, 1);
        led = 1;
        if (j->calls_pending < j->group_hint)
            gather_round(j, min_d(j->last_sync_s, 1e-3));
        if (j->durable_seq >= seq) /* a roll synced meanwhile */
            break;
        if ((rc = flush_wbuf(j, err)) != DT_OK)
            break;
        POKE(j->syncing, 1);
        uint64_t target = j->next_seq - 1;
        uint32_t calls = j->calls_pending;
        POKE(j->calls_pending, 0);
        int fd = j->wfd;
        pthread_mutex_unlock(&j->lock);
        double t0 = dt_now();
        int failed = fdatasync(fd);
        int e = errno;
        double took = dt_now() - t0;
        pthread_mutex_lock(&j->lock);
        j->c.syncs++;
        j->last_sync_s = took;
        j->group_hint = calls + j->calls_pending; /* served + arrived meanwhile */
        if (failed) {
            errno = e;
            rc = io_fail(err, "cannot sync the queue log file", j->w_segno, j->w_size);
        } else if (target > j->durable_seq) {
            POKE(j->durable_seq, target);
        }
        POKE(j->syncing, 0);
        break;
    }
    if (led) {
        POKE(j->leading, 0);
        pthread_cond_broadcast(&j->synced);
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

int dt_journal_push(dt_journal *j, size_t n, const uint8_t *const *rec, const uint32_t *len,
                    const uint32_t *ops, const uint8_t *kind, size_t *pushed, dt_err *err)
{
    *pushed = 0;
    pthread_mutex_lock(&j->lock);
    int rc = DT_OK;
    uint64_t free_bytes = UINT64_MAX, need_all = 0;
    struct statvfs vfs;
    if (!fstatvfs(j->wfd, &vfs))
        free_bytes = (uint64_t)vfs.f_bavail * vfs.f_frsize;
    size_t i = 0;
    gather g;
    g.n = g.records = g.has_wbuf = 0;
    g.bytes = 0;
    for (; i < n; i++) {
        if (len[i] > MAX_RECORD) {
            rc = dt_fail(err, DT_E_ARG, "record larger than the queue allows", (int64_t)i, -1,
                         MAX_RECORD, len[i]);
            break;
        }
        uint64_t need = REC_HEADER + pad8(len[i]);
        if (j->cfg.space_max != DT_J_UNLIMITED && j->c.disk_bytes + need > j->cfg.space_max) {
            rc = dt_fail(err, DT_E_LIMIT, "QJournalSpaceMax reached", (int64_t)i, -1,
                         (int64_t)j->cfg.space_max, (int64_t)(j->c.disk_bytes + need));
            break;
        }
        need_all += need;
        if (free_bytes != UINT64_MAX && (free_bytes < need_all || free_bytes - need_all < j->cfg.free_min)) {
            rc = dt_fail(err, DT_E_DISKFULL, "QJournalFreeSpaceMin reached", (int64_t)i, -1,
                         (int64_t)j->cfg.free_min, (int64_t)(free_bytes - need_all));
            break;
        }
        int direct = len[i] >= DIRECT_RECORD;
        /* wbuf may move when a small record is framed into it */
        if (g.records && (!direct || g.records == GATHER_RECORDS) &&
            (rc = gather_flush(j, &g, &i, err)) != DT_OK)
            break;
        uint64_t pending = j->wlen + g.bytes;
        if (j->w_size + pending + need > j->cfg.segment_bytes && j->w_size + pending > SEG_HEADER &&
            ((rc = gather_flush(j, &g, &i, err)) != DT_OK || (rc = roll(j, err)) != DT_OK))
            break;
        uint32_t k = kind[i] ? 1 : 0;
        if (direct) {
            gather_add(j, &g, i, rec[i], len[i], ops[i] << 1 | k);
        } else if (reserve_wbuf(j, (size_t)need)) {
            rc = dt_fail(err, DT_E_NOMEM, "cannot buffer a queue record", (int64_t)i, -1,
                         (int64_t)need, 0);
            break;
        } else {
            j->wlen += frame(j->wbuf + j->wlen, rec[i], len[i], ops[i] << 1 | k, j->next_seq++);
        }
        j->c.disk_bytes += need;
        j->c.records++;
        j->c.pushed++;
        j->c.ops[k] += ops[i];
        j->c.bytes[k] += len[i];
        if (g.bytes >= WBUF_FLUSH && (rc = gather_flush(j, &g, &i, err)) != DT_OK)
            break;
        if (j->wlen >= WBUF_FLUSH && !j->syncing && (rc = flush_wbuf(j, err)) != DT_OK)
            break;
    }
    /* the caller's buffers are not ours past this call */
    size_t at = i;
    int frc = gather_flush(j, &g, &at, err);
    if (frc != DT_OK) {
        rc = frc;
        i = at;
    }
    *pushed = i;
    if (i && j->cfg.write_through) {
        POKE(j->calls_pending, j->calls_pending + 1);
        if (j->gathering)
            pthread_cond_signal(&j->joined);
        int src = sync_through(j, j->next_seq - 1, err);
        if (src != DT_OK) {
            rc = src;
            *pushed = 0; /* nothing is known to be durable */
        }
        return rc;
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

/* Move the reader into the next segment; commits so the old one can go. */
static int advance_segment(dt_journal *j, dt_err *err)
{
    uint64_t first_seq;
    if (j->r.segno + 1 == j->w_segno) {
        /* the writer's own segment: read it through a descriptor of our own */
        if (open_segment(j, &j->r, j->w_segno, &first_seq, O_RDONLY))
            return io_fail(err, "cannot open a queue segment", j->w_segno, 0);
        j->r.end = j->w_size;
    } else if (open_segment(j, &j->r, j->r.segno + 1, &first_seq, O_RDONLY)) {
        uint64_t segno = j->r.segno + 1;
        j->c.corrupt = 1;
        j->c.corrupt_segno = segno;
        j->c.corrupt_offset = 0;
        j->c.corrupt_seq = j->r_seq;
        return dt_fail(err, DT_E_CORRUPT, "a queue segment is missing or damaged", (int64_t)segno, 0,
                       (int64_t)j->r_seq, -1);
    }
    if (first_seq > j->r_seq)
        return dt_fail(err, DT_E_CORRUPT, "queue records are missing between segments",
                       (int64_t)j->r.segno, SEG_HEADER, (int64_t)j->r_seq, (int64_t)first_seq);
    return commit_locked(j, err); /* so the segment just read can be deleted */
}

int dt_journal_pop(dt_journal *j, size_t max_records, uint8_t *out, size_t out_cap, uint32_t *len,
                   uint32_t *ops, uint8_t *kind, size_t *popped, size_t *used, dt_err *err)
{
    *popped = *used = 0;
    pthread_mutex_lock(&j->lock);
    int rc = DT_OK;
    size_t k = 0, bytes = 0;
    while (k < max_records && j->r_seq < j->next_seq) {
        if (j->r.segno == j->w_segno && j->r.off >= j->w_size && (rc = flush_wbuf(j, err)) != DT_OK)
            break;
        rec_view v;
        int st = record_at(&j->r, j->r.off, &v);
        if (st == REC_END) {
            if (j->r.segno >= j->w_segno) {
                rc = dt_fail(err, DT_E_CORRUPT, "queue records are missing", (int64_t)j->r.segno,
                             (int64_t)j->r.off, (int64_t)j->r_seq, -1);
                break;
            }
            if ((rc = advance_segment(j, err)) != DT_OK)
                break;
            continue;
        }
        if (st != REC_OK || v.seq > j->r_seq) {
            if (st == REC_IO)
                rc = io_fail(err, "cannot read the queue log file", j->r.segno, j->r.off);
            else if (st == REC_NOMEM)
                rc = dt_fail(err, DT_E_NOMEM, "cannot buffer a queue record", -1, -1, 0, 0);
            else {
                j->c.corrupt = 1;
                j->c.corrupt_segno = j->r.segno;
                j->c.corrupt_offset = j->r.off;
                j->c.corrupt_seq = j->r_seq;
                rc = dt_fail(err, DT_E_CORRUPT, "a queue record failed its check",
                             (int64_t)j->r.segno, (int64_t)j->r.off, (int64_t)j->r_seq,
                             st == REC_OK ? (int64_t)v.seq : -1);
            }
            break;
        }
        if (v.seq < j->r_seq) { /* consumed before a prepend */
            j->r.off += REC_HEADER + pad8(v.len);
            continue;
        }
        if (bytes + v.len > out_cap) {
            if (k == 0)
                rc = dt_fail(err, DT_E_SPACE, "pop buffer smaller than the next record", 0, -1,
                             v.len, (int64_t)out_cap);
            break;
        }
        memcpy(out + bytes, v.payload, v.len);
        len[k] = v.len;
        ops[k] = v.meta >> 1;
        kind[k] = v.meta & 1;
        j->c.ops[v.meta & 1] -= v.meta >> 1;
        j->c.bytes[v.meta & 1] -= v.len;
        j->c.records--;
        j->c.popped++;
        bytes += v.len;
        k++;
        j->r.off += REC_HEADER + pad8(v.len);
        j->r_seq++;
    }
    pthread_mutex_unlock(&j->lock);
    *popped = k;
    *used = bytes;
    return k ? DT_OK : rc;
}

int dt_journal_prepend(dt_journal *j, size_t n, const uint8_t *const *rec, const uint32_t *len,
                       const uint32_t *ops, const uint8_t *kind, dt_err *err)
{
    if (!n)
        return DT_OK;
    pthread_mutex_lock(&j->lock);
    int rc = flush_wbuf(j, err);
    if (rc == DT_OK)
        rc = commit_locked(j, err);
    uint64_t segno = j->r.segno - 1, seq = j->r_seq - n;
    int fd = -1;
    if (rc == DT_OK)
        rc = new_segment(j, segno, seq, 0, &fd, err);
    if (rc == DT_OK) {
        uint64_t off = SEG_HEADER;
        uint8_t *buf = NULL;
        for (size_t i = 0; i < n && rc == DT_OK; i++) {
            size_t size = REC_HEADER + (size_t)pad8(len[i]);
            uint8_t *b = realloc(buf, size);
            if (!b) {
                rc = dt_fail(err, DT_E_NOMEM, "cannot buffer a queue record", (int64_t)i, -1, 0, 0);
                break;
            }
            buf = b;
            uint32_t k = kind[i] ? 1 : 0;
            frame(buf, rec[i], len[i], ops[i] << 1 | k, seq + i);
            if (write_all(fd, buf, size, off))
                rc = io_fail(err, "cannot write the queue log file", segno, off);
            off += size;
            j->c.disk_bytes += size;
        }
        free(buf);
        if (rc == DT_OK && (fdatasync(fd) || fsync(j->dirfd)))
            rc = io_fail(err, "cannot sync the queue log file", segno, off);
        if (rc == DT_OK) {
            uint64_t first_seq;
            seg_reader r = j->r;
            r.fd = -1;
            r.buf = NULL;
            r.cap = 0;
            if (open_segment(j, &r, segno, &first_seq, O_RDONLY)) {
                rc = io_fail(err, "cannot open a queue segment", segno, 0);
            } else {
                if (j->r.fd >= 0 && j->r.fd != j->wfd)
                    close(j->r.fd);
                r.buf = j->r.buf;
                r.cap = j->r.cap;
                j->r = r;
                j->r_seq = seq;
                j->first_segno = segno;
                for (size_t i = 0; i < n; i++) {
                    uint32_t k = kind[i] ? 1 : 0;
                    j->c.ops[k] += ops[i];
                    j->c.bytes[k] += len[i];
                }
                j->c.records += n;
                rc = commit_locked(j, err);
            }
        }
        close(fd);
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

int dt_journal_commit(dt_journal *j, dt_err *err)
{
    pthread_mutex_lock(&j->lock);
    int rc = commit_locked(j, err);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

void dt_journal_counts_get(dt_journal *j, dt_journal_counts *out)
{
    pthread_mutex_lock(&j->lock);
    *out = j->c;
    pthread_mutex_unlock(&j->lock);
}

/* ---- open and recovery ---- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Segment numbers in the directory, sorted. */
static int list_segments(dt_journal *j, uint64_t **out, size_t *n)
{
    int fd = dup(j->dirfd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    rewinddir(d);
    size_t cap = 0;
    uint64_t *v = dt_grow(NULL, &cap, 16, sizeof(uint64_t), 16);
    *n = 0;
    struct dirent *e;
    while (v && (e = readdir(d))) {
        uint64_t segno;
        char tail[8];
        if (strlen(e->d_name) != 23 || sscanf(e->d_name, "dtq%16" SCNx64 ".%3s", &segno, tail) != 2 ||
            strcmp(tail, "seg"))
            continue;
        if (*n == cap) {
            uint64_t *b = dt_grow(v, &cap, cap + 1, sizeof(uint64_t), 16);
            if (!b) {
                free(v);
                v = NULL;
                break;
            }
            v = b;
        }
        v[(*n)++] = segno;
    }
    closedir(d);
    if (!v)
        return -1;
    qsort(v, *n, sizeof(uint64_t), cmp_u64);
    *out = v;
    return 0;
}

static void note_corrupt(dt_journal *j, uint64_t segno, uint64_t off, uint64_t seq)
{
    if (!j->c.corrupt) {
        j->c.corrupt = 1;
        j->c.corrupt_segno = segno;
        j->c.corrupt_offset = off;
        j->c.corrupt_seq = seq;
    }
}

/* Walk every segment from the position: count what is queued, truncate a
 * torn tail, note the first corruption, and find the next sequence number. */
static int recover(dt_journal *j, const uint64_t *segs, size_t nsegs, uint64_t *start_off,
                   dt_err *err)
{
    uint64_t pos_seq = FIRST_SEQ, pos_segno = nsegs ? segs[0] : FIRST_SEGNO, pos_off = SEG_HEADER;
    int have_pos = read_pos(j, &pos_seq, &pos_segno, &pos_off);
    if (have_pos < 0)
        return dt_fail(err, DT_E_CORRUPT, "the queue position file is damaged", -1, -1, 0, 0);
    size_t first = 0;
    while (first < nsegs && segs[first] < pos_segno) { /* consumed, not yet deleted */
        char name[64];
        seg_name(name, segs[first++]);
        unlinkat(j->dirfd, name, 0);
    }
    j->first_segno = pos_segno;
    j->r_seq = pos_seq;
    *start_off = have_pos ? pos_off : SEG_HEADER;
    uint64_t expect = pos_seq, max_seq = pos_seq ? pos_seq - 1 : 0;
    seg_reader r = {.fd = -1};
    for (size_t s = first; s < nsegs; s++) {
        uint64_t first_seq;
        struct stat st;
        if (open_segment(j, &r, segs[s], &first_seq, O_RDWR)) {
            note_corrupt(j, segs[s], 0, expect);
            continue;
        }
        fstat(r.fd, &st);
        j->c.segments++;
        j->c.disk_bytes += (uint64_t)st.st_size;
        if (s == first && segs[s] != pos_segno && have_pos)
            note_corrupt(j, pos_segno, pos_off, expect); /* the position's segment is gone */
        if (s > first && segs[s] != segs[s - 1] + 1)
            note_corrupt(j, segs[s - 1] + 1, 0, expect);
        if (first_seq > expect)
            note_corrupt(j, segs[s], SEG_HEADER, expect);
        uint64_t off = SEG_HEADER;
        if (s == first && segs[s] == pos_segno && have_pos)
            off = pos_off;
        for (;;) {
            rec_view v;
            int rc = record_at(&r, off, &v);
            if (rc == REC_END && off < r.end) {
                /* zeros: the unwritten part of a preallocated segment */
                if (intact_after(&r, off)) {
                    note_corrupt(j, segs[s], off, expect);
                } else {
                    j->c.disk_bytes -= r.end - off;
                    if (ftruncate(r.fd, (off_t)off) || fdatasync(r.fd)) {
                        free(r.buf);
                        close(r.fd);
                        return io_fail(err, "cannot trim a queue segment", segs[s], off);
                    }
                }
                break;
            }
            if (rc == REC_END)
                break;
            if (rc == REC_IO || rc == REC_NOMEM) {
                free(r.buf);
                close(r.fd);
                return io_fail(err, "cannot read the queue log file", segs[s], off);
            }
            if (rc == REC_BAD) {
                if (s + 1 == nsegs && !intact_after(&r, off)) {
                    /* a write cut short by a crash: nothing after it was acknowledged */
                    j->c.torn_bytes += r.end - off;
                    j->c.disk_bytes -= r.end - off;
                    if (ftruncate(r.fd, (off_t)off) || fdatasync(r.fd)) {
                        free(r.buf);
                        close(r.fd);
                        return io_fail(err, "cannot truncate a torn queue record", segs[s], off);
                    }
                } else {
                    note_corrupt(j, segs[s], off, expect);
                }
                break;
            }
            if (v.seq > max_seq)
                max_seq = v.seq;
            if (v.seq >= expect && !j->c.corrupt) {
                if (v.seq != expect) {
                    note_corrupt(j, segs[s], off, expect);
                } else {
                    j->c.records++;
                    j->c.ops[v.meta & 1] += v.meta >> 1;
                    j->c.bytes[v.meta & 1] += v.len;
                    expect++;
                }
            }
            off += REC_HEADER + pad8(v.len);
        }
    }
    free(r.buf);
    if (r.fd >= 0)
        close(r.fd);
    /* past damage, new records must not reuse a sequence number seen on disk */
    j->next_seq = j->c.corrupt && max_seq + 1 > expect ? max_seq + 1 : expect;
    j->durable_seq = j->next_seq - 1;
    return DT_OK;
}

int dt_journal_open(const dt_journal_cfg *cfg, dt_journal **out, dt_err *err)
{
    if (cfg->segment_bytes < 4096 || cfg->segment_bytes > (uint64_t)4095 << 20)
        return dt_fail(err, DT_E_ARG, "QJournalFileSize out of range", -1, -1, 4095,
                       (int64_t)(cfg->segment_bytes >> 20));
    dt_journal *j = calloc(1, sizeof(*j));
    if (!j)
        return dt_fail(err, DT_E_NOMEM, "cannot allocate the disk queue", -1, -1, 0, 0);
    j->cfg = *cfg;
    snprintf(j->dir, sizeof j->dir, "%s", cfg->dir);
    j->cfg.dir = j->dir;
    j->wfd = j->r.fd = -1;
    /* pushers of one round arrive together and hold the lock briefly:
     * spinning a little beats a futex sleep and wake-up on a virtual machine */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&j->lock, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&j->synced, NULL);
    dt_cond_init(&j->joined);
    mkdir(j->dir, 0755);
    j->dirfd = open(j->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc;
    uint64_t *segs = NULL;
    size_t nsegs = 0;
    if (j->dirfd < 0) {
        rc = io_fail(err, "cannot open QJournalDir", 0, 0);
        goto fail;
    }
    if (list_segments(j, &segs, &nsegs)) {
        rc = io_fail(err, "cannot list QJournalDir", 0, 0);
        goto fail;
    }
    uint64_t start_off;
    if ((rc = recover(j, segs, nsegs, &start_off, err)) != DT_OK)
        goto fail;
    /* writes always start a fresh segment, after whatever recovery found */
    j->w_segno = (nsegs && segs[nsegs - 1] > j->first_segno ? segs[nsegs - 1] : j->first_segno) + 1;
    if ((rc = new_segment(j, j->w_segno, j->next_seq, cfg->write_through, &j->wfd, err)) != DT_OK)
        goto fail;
    j->w_size = SEG_HEADER;
    uint64_t first_seq;
    uint64_t start = j->first_segno;
    while (open_segment(j, &j->r, start, &first_seq, O_RDONLY) && start < j->w_segno)
        start++;
    if (j->r.fd < 0) {
        rc = io_fail(err, "cannot open a queue segment", start, 0);
        goto fail;
    }
    if (start == j->first_segno)
        j->r.off = start_off;
    if (j->r.segno == j->w_segno)
        j->r.end = j->w_size;
    free(segs);
    *out = j;
    return DT_OK;
fail:
    free(segs);
    if (j->dirfd >= 0)
        close(j->dirfd);
    if (j->wfd >= 0)
        close(j->wfd);
    if (j->r.fd >= 0)
        close(j->r.fd);
    free(j->r.buf);
    free(j);
    return rc;
}

int dt_journal_close(dt_journal *j, dt_err *err)
{
    pthread_mutex_lock(&j->lock);
    int rc = flush_wbuf(j, err);
    /* buffered records outlive the process once written, and buffered mode
     * never promised more (a machine crash may lose them): no sync for it */
    if (rc == DT_OK && j->cfg.write_through && fdatasync(j->wfd))
        rc = io_fail(err, "cannot sync the queue log file", j->w_segno, j->w_size);
    if (rc == DT_OK && j->cfg.write_through && ftruncate(j->wfd, (off_t)j->w_size))
        rc = io_fail(err, "cannot trim a queue segment", j->w_segno, j->w_size);
    if (rc == DT_OK)
        rc = commit_locked(j, err);
    pthread_mutex_unlock(&j->lock);
    if (j->r.fd >= 0 && j->r.fd != j->wfd)
        close(j->r.fd);
    close(j->wfd);
    close(j->dirfd);
    free(j->r.buf);
    free(j->wbuf);
    pthread_mutex_destroy(&j->lock);
    pthread_cond_destroy(&j->synced);
    pthread_cond_destroy(&j->joined);
    free(j);
    return rc;
}
