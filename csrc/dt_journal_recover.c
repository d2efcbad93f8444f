#define _GNU_SOURCE
/* Opening a journal: list its segments, walk them from the committed
 * position, cut a write torn by a crash, mark real damage as corruption;
 * closing it. */
#include "dt_journal_int.h"

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

/* Whether a segment file is shorter than its header, or only zeros there. */
static int blank_segment(dt_journal *j, uint64_t segno)
{
    char name[64];
    dtj_seg_name(name, segno);
    int fd = openat(j->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint8_t h[SEG_HEADER + 1];
    ssize_t n = pread(fd, h, sizeof h, 0);
    close(fd);
    if (n < 0)
        return 0;
    if (n < SEG_HEADER)
        return 1;
    if (n > SEG_HEADER)
        return 0;
    for (int i = 0; i < SEG_HEADER; i++)
        if (h[i])
            return 0;
    return 1;
}

/* Walk every segment from the position: count what is queued, truncate a
 * torn tail, note the first corruption, and find the next sequence number. */
static int recover(dt_journal *j, const uint64_t *segs, size_t nsegs, uint64_t *start_off,
                   int *had_pos, dt_err *err)
{
    uint64_t pos_seq = FIRST_SEQ, pos_segno = nsegs ? segs[0] : FIRST_SEGNO, pos_off = SEG_HEADER;
    uint64_t head = 0;
    int have_pos = dtj_read_pos(j, &pos_seq, &pos_segno, &pos_off, &head);
    if (have_pos < 0)
        return dt_fail(err, DT_E_CORRUPT, "the queue position file is damaged", -1, -1, 0, 0);
    *had_pos = have_pos;
    /* every journal has its position file from its first open on: segments
     * without one mean it was lost, and with it what was consumed */
    if (!have_pos && nsegs) {
        j->pos_lost = 1;
        note_corrupt(j, segs[0], 0, pos_seq);
    }
    size_t first = 0;
    while (first < nsegs && segs[first] < pos_segno) { /* consumed, not yet deleted */
        char name[64];
        dtj_seg_name(name, segs[first++]);
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
        if (dtj_open_segment(j, &r, segs[s], &first_seq, O_RDWR)) {
            if (s + 1 == nsegs && blank_segment(j, segs[s])) {
                /* made, then cut by a crash before its header: held nothing */
                char name[64];
                dtj_seg_name(name, segs[s]);
                unlinkat(j->dirfd, name, 0);
                continue;
            }
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
            int rc = dtj_record_at(&r, off, &v);
            if (rc == REC_END && off < r.end) {
                /* zeros: the unwritten part of a preallocated segment */
                if (dtj_intact_after(&r, off)) {
                    note_corrupt(j, segs[s], off, expect);
                } else {
                    j->c.disk_bytes -= r.end - off;
                    if (ftruncate(r.fd, (off_t)off) || fdatasync(r.fd)) {
                        free(r.buf);
                        close(r.fd);
                        return dtj_io_fail(err, "cannot trim a queue segment", segs[s], off);
                    }
                }
                break;
            }
            if (rc == REC_END)
                break;
            if (rc == REC_IO || rc == REC_NOMEM) {
                free(r.buf);
                close(r.fd);
                return dtj_io_fail(err, "cannot read the queue log file", segs[s], off);
            }
            if (rc == REC_BAD) {
                if (s + 1 == nsegs && !dtj_intact_after(&r, off)) {
                    /* a write cut short by a crash: nothing after it was acknowledged */
                    j->c.torn_bytes += r.end - off;
                    j->c.disk_bytes -= r.end - off;
                    if (ftruncate(r.fd, (off_t)off) || fdatasync(r.fd)) {
                        free(r.buf);
                        close(r.fd);
                        return dtj_io_fail(err, "cannot truncate a torn queue record", segs[s],
                                           off);
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
    /* the newest segment the writer made is gone (deleted, or never listed) */
    if (head && (!nsegs || segs[nsegs - 1] < head))
        note_corrupt(j, head, 0, expect);
    j->head_segno = head;
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
        rc = dtj_io_fail(err, "cannot open QJournalDir", 0, 0);
        goto fail;
    }
    if (list_segments(j, &segs, &nsegs)) {
        rc = dtj_io_fail(err, "cannot list QJournalDir", 0, 0);
        goto fail;
    }
    uint64_t start_off;
    int had_pos;
    if ((rc = recover(j, segs, nsegs, &start_off, &had_pos, err)) != DT_OK)
        goto fail;
    /* writes always start a fresh segment, after whatever recovery found and
     * after the recorded head: a lost newest segment stays a gap that every
     * later open sees too */
    j->w_segno = nsegs && segs[nsegs - 1] > j->first_segno ? segs[nsegs - 1] : j->first_segno;
    if (j->head_segno > j->w_segno)
        j->w_segno = j->head_segno;
    j->w_segno++;
    /* a new journal: its position file comes first, so that its first
     * segment is never found without one (which would mean a lost position) */
    if (!had_pos && !nsegs &&
        (rc = dtj_write_pos(j, j->r_seq, j->w_segno, SEG_HEADER, err)) != DT_OK)
        goto fail;
    rc = dtj_new_segment(j, j->w_segno, j->next_seq, cfg->write_through, &j->wfd, err);
    if (rc != DT_OK)
        goto fail;
    j->w_size = SEG_HEADER;
    j->head_segno = j->w_segno;
    uint64_t first_seq;
    uint64_t start = j->first_segno;
    while (dtj_open_segment(j, &j->r, start, &first_seq, O_RDONLY) && start < j->w_segno)
        start++;
    if (j->r.fd < 0) {
        rc = dtj_io_fail(err, "cannot open a queue segment", start, 0);
        goto fail;
    }
    if (start == j->first_segno)
        j->r.off = start_off;
    if (j->r.segno == j->w_segno)
        j->r.end = j->w_size;
    j->pos_seq = j->r_seq;
    j->pos_segno = j->r.segno;
    j->pos_off = j->r.off;
    /* a journal whose position was lost keeps lacking one, so that it is
     * reported again until it is reset; otherwise record the new head */
    if (!j->pos_lost && (rc = dtj_write_pos(j, j->pos_seq, j->pos_segno, j->pos_off, err)) != DT_OK)
        goto fail;
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
    int rc = dtj_flush_wbuf(j, err);
    /* buffered records outlive the process once written, and buffered mode
     * never promised more (a machine crash may lose them): no sync for it */
    if (rc == DT_OK && j->cfg.write_through && fdatasync(j->wfd))
        rc = dtj_io_fail(err, "cannot sync the queue log file", j->w_segno, j->w_size);
    if (rc == DT_OK && j->cfg.write_through && ftruncate(j->wfd, (off_t)j->w_size))
        rc = dtj_io_fail(err, "cannot trim a queue segment", j->w_segno, j->w_size);
    if (rc == DT_OK)
        rc = dtj_commit_locked(j, err);
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
