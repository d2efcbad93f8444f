#define _GNU_SOURCE
/* The journal's on-disk format: segment headers, record framing (header,
 * CRC-32C, padding), reading records back checked, and the position file. */
#include "dt_journal_int.h"

static const char SEG_MAGIC[8] = {'D', 'T', 'Q', 'S', 'E', 'G', '0', '1'};
/* Position file v2 adds the newest segment; v1 files are still read. */
static const char POS_MAGIC[8] = {'D', 'T', 'Q', 'P', 'O', 'S', '0', '2'};
static const char POS_MAGIC_V1[8] = {'D', 'T', 'Q', 'P', 'O', 'S', '0', '1'};

int dtj_io_fail(dt_err *err, const char *what, uint64_t segno, uint64_t off)
{
    int e = errno;
    int code = e == ENOSPC || e == EDQUOT ? DT_E_DISKFULL : DT_E_IO;
    dt_fail(err, code, what, (int64_t)segno, (int64_t)off, 0, 0);
    if (err)
        err->sys_errno = e;
    return code;
}

void dtj_seg_name(char *out, uint64_t segno) { sprintf(out, "dtq%016" PRIx64 ".seg", segno); }

/* pwritev all of iov[0..n), resuming after short writes; iov is consumed. */
int dtj_writev_all(int fd, struct iovec *iov, int n, uint64_t off)
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

int dtj_write_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    struct iovec one = {(void *)p, n};
    return dtj_writev_all(fd, &one, n ? 1 : 0, off);
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

void dtj_seg_header(uint8_t *h, uint64_t segno, uint64_t first_seq)
{
    memset(h, 0, SEG_HEADER);
    memcpy(h, SEG_MAGIC, 8);
    put64(h + 8, segno);
    put64(h + 16, first_seq);
    put32(h + 24, dt_crc32c(0, h, 24));
}

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

/* The record at off, checked; REC_BAD when it is damaged or cut short. */
int dtj_record_at(seg_reader *r, uint64_t off, rec_view *v)
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
int dtj_intact_after(seg_reader *r, uint64_t bad_off)
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
            if (get32(buf + i + 20) == REC_MARKER && dtj_record_at(r, base + i, &v) == REC_OK) {
                found = 1;
                break;
            }
        }
    }
    free(buf);
    return found;
}

int dtj_open_segment(dt_journal *j, seg_reader *r, uint64_t segno, uint64_t *first_seq, int flags)
{
    char name[64];
    dtj_seg_name(name, segno);
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

int dtj_write_pos(dt_journal *j, uint64_t seq, uint64_t segno, uint64_t off, dt_err *err)
{
    uint8_t p[48] = {0};
    memcpy(p, POS_MAGIC, 8);
    put64(p + 8, seq);
    put64(p + 16, segno);
    put64(p + 24, off);
    put64(p + 32, j->head_segno);
    put32(p + 40, dt_crc32c(0, p, 40));
    int fd = openat(j->dirfd, "dtq.pos.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return dtj_io_fail(err, "cannot write the queue position", segno, off);
    if (dtj_write_all(fd, p, sizeof p, 0) || fdatasync(fd)) {
        close(fd);
        return dtj_io_fail(err, "cannot write the queue position", segno, off);
    }
    close(fd);
    if (renameat(j->dirfd, "dtq.pos.tmp", j->dirfd, "dtq.pos") || fsync(j->dirfd))
        return dtj_io_fail(err, "cannot write the queue position", segno, off);
    j->pos_seq = seq;
    j->pos_segno = segno;
    j->pos_off = off;
    return DT_OK;
}

/* 1 and the position (head 0 from a v1 file), 0 when there is no file, -1
 * when it is damaged. */
int dtj_read_pos(dt_journal *j, uint64_t *seq, uint64_t *segno, uint64_t *off, uint64_t *head)
{
    int fd = openat(j->dirfd, "dtq.pos", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    uint8_t p[48];
    size_t got;
    int bad = read_full(fd, p, sizeof p, 0, &got) != 0;
    close(fd);
    if (!bad && got == 48 && !memcmp(p, POS_MAGIC, 8) && get32(p + 40) == dt_crc32c(0, p, 40))
        *head = get64(p + 32);
    else if (!bad && got == 40 && !memcmp(p, POS_MAGIC_V1, 8) && get32(p + 32) == dt_crc32c(0, p, 32))
        *head = 0;
    else
        return -1;
    *seq = get64(p + 8);
    *segno = get64(p + 16);
    *off = get64(p + 24);
    return 1;
}
