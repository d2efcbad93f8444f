#define _GNU_SOURCE
/* Pushing records: the write buffer, records written straight from the
 * caller's buffers, segment rolls, and group commit for write-through pushes
 * (one leader syncs for every pusher of its round); prepending ahead of the
 * queue. */
#include "dt_journal_int.h"

/* Fill a write-through segment with zeros up front, so that later syncs
 * flush data only: overwriting allocated blocks leaves the file's size and
 * extents alone, which an append (or fallocate's unwritten extents) would not. */
static int preallocate(int fd, uint64_t from, uint64_t to)
{
    static const uint8_t zeros[1 << 16];
    for (uint64_t off = from; off < to;) {
        size_t n = to - off < sizeof zeros ? (size_t)(to - off) : sizeof zeros;
        if (dtj_write_all(fd, zeros, n, off))
            return -1;
        off += n;
    }
    return 0;
}

int dtj_new_segment(dt_journal *j, uint64_t segno, uint64_t first_seq, int prealloc,
                       int *fd_out, dt_err *err)
{
    char name[64];
    dtj_seg_name(name, segno);
    int fd = openat(j->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    uint8_t h[SEG_HEADER];
    dtj_seg_header(h, segno, first_seq);
    if (fd < 0 || dtj_write_all(fd, h, SEG_HEADER, 0) ||
        (prealloc && preallocate(fd, SEG_HEADER, j->cfg.segment_bytes)) ||
        (j->cfg.write_through && (fdatasync(fd) || fsync(j->dirfd)))) {
        int rc = dtj_io_fail(err, "cannot create a queue segment", segno, 0);
        if (fd >= 0)
            close(fd);
        return rc;
    }
    *fd_out = fd;
    j->c.segments++;
    j->c.disk_bytes += SEG_HEADER;
    return DT_OK;
}

int dtj_flush_wbuf(dt_journal *j, dt_err *err)
{
    if (!j->wlen)
        return DT_OK;
    if (dtj_write_all(j->wfd, j->wbuf, j->wlen, j->w_size))
        return dtj_io_fail(err, "cannot write the queue log file", j->w_segno, j->w_size);
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
    dtj_frame_header(h, src, len, meta, j->next_seq++);
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
    if (dtj_writev_all(j->wfd, g->iov, g->n, j->w_size)) {
        rc = dtj_io_fail(err, "cannot write the queue log file", j->w_segno, j->w_size);
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
    int rc = dtj_flush_wbuf(j, err);
    if (rc)
        return rc;
    if (j->cfg.write_through) {
        if (fdatasync(j->wfd))
            return dtj_io_fail(err, "cannot sync the queue log file", j->w_segno, j->w_size);
        POKE(j->durable_seq, j->next_seq - 1);
    }
    int fd;
    rc = dtj_new_segment(j, j->w_segno + 1, j->next_seq, j->cfg.write_through, &fd, err);
    if (rc)
        return rc;
    /* the unused preallocated tail goes; if this is lost in a crash,
     * recovery reads the zeros as the end and truncates them then */
    if (j->cfg.write_through && ftruncate(j->wfd, (off_t)j->w_size)) {
        close(fd);
        return dtj_io_fail(err, "cannot trim a queue segment", j->w_segno, j->w_size);
    }
    close(j->wfd);
    j->wfd = fd;
    j->w_segno++;
    j->w_size = SEG_HEADER;
    /* once per segment: record the new head, so that recovery can tell a
     * lost newest segment from the end of the queue */
    j->head_segno = j->w_segno;
    return j->pos_lost ? DT_OK : dtj_write_pos(j, j->pos_seq, j->pos_segno, j->pos_off, err);
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
        if ((rc = dtj_flush_wbuf(j, err)) != DT_OK)
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
            rc = dtj_io_fail(err, "cannot sync the queue log file", j->w_segno, j->w_size);
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
            j->wlen += dtj_frame(j->wbuf + j->wlen, rec[i], len[i], ops[i] << 1 | k, j->next_seq++);
        }
        j->c.disk_bytes += need;
        j->c.records++;
        j->c.pushed++;
        j->c.ops[k] += ops[i];
        j->c.bytes[k] += len[i];
        if (g.bytes >= WBUF_FLUSH && (rc = gather_flush(j, &g, &i, err)) != DT_OK)
            break;
        if (j->wlen >= WBUF_FLUSH && !j->syncing && (rc = dtj_flush_wbuf(j, err)) != DT_OK)
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

int dt_journal_prepend(dt_journal *j, size_t n, const uint8_t *const *rec, const uint32_t *len,
                       const uint32_t *ops, const uint8_t *kind, dt_err *err)
{
    if (!n)
        return DT_OK;
    pthread_mutex_lock(&j->lock);
    int rc = dtj_flush_wbuf(j, err);
    if (rc == DT_OK)
        rc = j->cfg.hold ? dtj_rewind_locked(j, err) : dtj_commit_locked(j, err);
    uint64_t segno = j->r.segno - 1, seq = j->r_seq - n;
    int fd = -1;
    if (rc == DT_OK)
        rc = dtj_new_segment(j, segno, seq, 0, &fd, err);
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
            dtj_frame(buf, rec[i], len[i], ops[i] << 1 | k, seq + i);
            if (dtj_write_all(fd, buf, size, off))
                rc = dtj_io_fail(err, "cannot write the queue log file", segno, off);
            off += size;
            j->c.disk_bytes += size;
        }
        free(buf);
        if (rc == DT_OK && (fdatasync(fd) || fsync(j->dirfd)))
            rc = dtj_io_fail(err, "cannot sync the queue log file", segno, off);
        if (rc == DT_OK) {
            uint64_t first_seq;
            seg_reader r = j->r;
            r.fd = -1;
            r.buf = NULL;
            r.cap = 0;
            if (dtj_open_segment(j, &r, segno, &first_seq, O_RDONLY)) {
                rc = dtj_io_fail(err, "cannot open a queue segment", segno, 0);
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
                rc = dtj_commit_reader_locked(j, err);
            }
        }
        close(fd);
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}
