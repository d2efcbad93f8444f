#define _GNU_SOURCE
/* Popping records in order, moving across segments, and committing the
 * consumer's position so that consumed segments can be deleted. */
#include "dt_journal_int.h"

/* Delete segments the committed position has left behind. */
static void drop_consumed(dt_journal *j, uint64_t upto)
{
    char name[64];
    for (; j->first_segno < upto; j->first_segno++) {
        dtj_seg_name(name, j->first_segno);
        struct stat st;
        if (!fstatat(j->dirfd, name, &st, 0) && !unlinkat(j->dirfd, name, 0)) {
            j->c.disk_bytes -= (uint64_t)st.st_size;
            j->c.segments--;
        }
    }
}

int dtj_commit_reader_locked(dt_journal *j, dt_err *err)
{
    if (j->pos_lost)
        return DT_OK;
    int rc = dtj_write_pos(j, j->r_seq, j->r.segno, j->r.off, err);
    if (rc == DT_OK)
        drop_consumed(j, j->r.segno);
    return rc;
}

int dtj_commit_locked(dt_journal *j, dt_err *err)
{
    /* lost: keep it so, what was consumed before is unknown; held: only a
     * committed mark consumes */
    return j->cfg.hold ? DT_OK : dtj_commit_reader_locked(j, err);
}


/* Move the reader into the next segment; commits so the old one can go. */
static int advance_segment(dt_journal *j, dt_err *err)
{
    uint64_t first_seq;
    if (j->r.segno + 1 == j->w_segno) {
        /* the writer's own segment: read it through a descriptor of our own */
        if (dtj_open_segment(j, &j->r, j->w_segno, &first_seq, O_RDONLY))
            return dtj_io_fail(err, "cannot open a queue segment", j->w_segno, 0);
        j->r.end = j->w_size;
    } else if (dtj_open_segment(j, &j->r, j->r.segno + 1, &first_seq, O_RDONLY)) {
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
    return dtj_commit_locked(j, err); /* so the segment just read can be deleted */
}

void dt_journal_mark_get(dt_journal *j, dt_journal_mark *out)
{
    pthread_mutex_lock(&j->lock);
    out->seq = j->r_seq;
    out->segno = j->r.segno;
    out->off = j->r.off;
    pthread_mutex_unlock(&j->lock);
}

int dt_journal_commit_mark(dt_journal *j, const dt_journal_mark *m, dt_err *err)
{
    pthread_mutex_lock(&j->lock);
    int rc = DT_OK;
    if (m->seq > j->r_seq || m->segno > j->r.segno)
        rc = dt_fail(err, DT_E_ARG, "a queue mark lies ahead of the reader", (int64_t)m->segno,
                     (int64_t)m->off, (int64_t)m->seq, (int64_t)j->r_seq);
    else if (!j->pos_lost && m->seq > j->pos_seq) {
        rc = dtj_write_pos(j, m->seq, m->segno, m->off, err);
        if (rc == DT_OK)
            drop_consumed(j, m->segno);
    }
    pthread_mutex_unlock(&j->lock);
    return rc;
}

/* Put the reader back at the committed position (held mode, before a
 * prepend): what was popped since is read again. */
int dtj_rewind_locked(dt_journal *j, dt_err *err)
{
    if (j->r.segno == j->pos_segno && j->r.off == j->pos_off)
        return DT_OK;
    uint64_t first_seq;
    if (j->r.segno != j->pos_segno) {
        if (dtj_open_segment(j, &j->r, j->pos_segno, &first_seq, O_RDONLY))
            return dtj_io_fail(err, "cannot open a queue segment", j->pos_segno, 0);
        if (j->pos_segno == j->w_segno)
            j->r.end = j->w_size;
    }
    j->r.off = j->pos_off;
    j->r.blen = 0;
    j->r_seq = j->pos_seq;
    return DT_OK;
}

int dt_journal_pop(dt_journal *j, size_t max_records, uint8_t *out, size_t out_cap, uint32_t *len,
                   uint32_t *ops, uint8_t *kind, size_t *popped, size_t *used, dt_err *err)
{
    *popped = *used = 0;
    pthread_mutex_lock(&j->lock);
    int rc = DT_OK;
    size_t k = 0, bytes = 0;
    while (k < max_records && j->r_seq < j->next_seq) {
        if (j->r.segno == j->w_segno && j->r.off >= j->w_size &&
            (rc = dtj_flush_wbuf(j, err)) != DT_OK)
            break;
        rec_view v;
        int st = dtj_record_at(&j->r, j->r.off, &v);
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
                rc = dtj_io_fail(err, "cannot read the queue log file", j->r.segno, j->r.off);
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
    /* at a loss found when the journal was opened: an error every time,
     * never an empty queue */
    if (!k && rc == DT_OK && j->c.corrupt && j->r_seq >= j->c.corrupt_seq)
        rc = dt_fail(err, DT_E_CORRUPT, "queued records are lost", (int64_t)j->c.corrupt_segno,
                     (int64_t)j->c.corrupt_offset, (int64_t)j->c.corrupt_seq, -1);
    pthread_mutex_unlock(&j->lock);
    *popped = k;
    *used = bytes;
    return k ? DT_OK : rc;
}

int dt_journal_commit(dt_journal *j, dt_err *err)
{
    pthread_mutex_lock(&j->lock);
    int rc = dtj_commit_locked(j, err);
    pthread_mutex_unlock(&j->lock);
    return rc;
}

void dt_journal_counts_get(dt_journal *j, dt_journal_counts *out)
{
    pthread_mutex_lock(&j->lock);
    *out = j->c;
    pthread_mutex_unlock(&j->lock);
}
