/* Private to the journal's C files (the public interface and the on-disk
 * format are in dt_journal.h): the format's constants, the journal's state
 * and the helpers the files share.  dt_journal_format.c frames and checks
 * records and keeps the position file, dt_journal_write.c pushes with group
 * commit, dt_journal_read.c pops and commits, dt_journal_recover.c opens a
 * journal and tells a torn write from corruption.  Each .c file defines
 * _GNU_SOURCE before including this header. */
#ifndef DT_JOURNAL_INT_H
#define DT_JOURNAL_INT_H

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
    /* the position file: the consumer's committed place, and the newest
     * segment the writer made (so that a lost newest segment is noticed) */
    uint64_t pos_seq, pos_segno, pos_off, head_segno;
    int pos_lost; /* segments were found without a position file */
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

/* The REC_HEADER bytes that frame a record of src. */
static inline void dtj_frame_header(uint8_t *h, const uint8_t *src, uint32_t len, uint32_t meta,
                                    uint64_t seq)
{
    put32(h, len);
    put32(h + 4, meta);
    put64(h + 8, seq);
    put32(h + 16, dt_crc32c(dt_crc32c(0, h, 16), src, len));
    put32(h + 20, REC_MARKER);
}

/* Frame one record at dst (REC_HEADER + pad8(len) bytes). */
static inline size_t dtj_frame(uint8_t *dst, const uint8_t *src, uint32_t len, uint32_t meta,
                               uint64_t seq)
{
    dtj_frame_header(dst, src, len, meta, seq);
    memcpy(dst + REC_HEADER, src, len);
    size_t size = REC_HEADER + pad8(len);
    memset(dst + REC_HEADER + len, 0, size - REC_HEADER - len);
    return size;
}

/* What dtj_record_at found. */
enum { REC_END = 0, REC_OK = 1, REC_BAD = -1, REC_IO = -2, REC_NOMEM = -3 };

/* Shared between the journal's files only, never exported from the module. */
#define DTJ_PRIVATE __attribute__((visibility("hidden")))

/* dt_journal_format.c: segment and record framing, checked reads, the position file */
DTJ_PRIVATE int dtj_io_fail(dt_err *err, const char *what, uint64_t segno, uint64_t off);
DTJ_PRIVATE void dtj_seg_name(char *out, uint64_t segno);
DTJ_PRIVATE int dtj_writev_all(int fd, struct iovec *iov, int n, uint64_t off);
DTJ_PRIVATE int dtj_write_all(int fd, const uint8_t *p, size_t n, uint64_t off);
DTJ_PRIVATE void dtj_seg_header(uint8_t *h, uint64_t segno, uint64_t first_seq);
DTJ_PRIVATE int dtj_record_at(seg_reader *r, uint64_t off, rec_view *v);
DTJ_PRIVATE int dtj_intact_after(seg_reader *r, uint64_t bad_off);
DTJ_PRIVATE int dtj_open_segment(dt_journal *j, seg_reader *r, uint64_t segno, uint64_t *first_seq,
                                 int flags);
DTJ_PRIVATE int dtj_write_pos(dt_journal *j, uint64_t seq, uint64_t segno, uint64_t off,
                              dt_err *err);
DTJ_PRIVATE int dtj_read_pos(dt_journal *j, uint64_t *seq, uint64_t *segno, uint64_t *off,
                             uint64_t *head);
/* dt_journal_read.c: committing the consumer position */
DTJ_PRIVATE int dtj_commit_locked(dt_journal *j, dt_err *err);
/* Persist the reader's place, held or not (a prepend moves it back). */
DTJ_PRIVATE int dtj_commit_reader_locked(dt_journal *j, dt_err *err);
DTJ_PRIVATE int dtj_rewind_locked(dt_journal *j, dt_err *err);
/* dt_journal_write.c: segments and the write buffer */
DTJ_PRIVATE int dtj_new_segment(dt_journal *j, uint64_t segno, uint64_t first_seq, int prealloc,
                                int *fd_out, dt_err *err);
DTJ_PRIVATE int dtj_flush_wbuf(dt_journal *j, dt_err *err);

#endif
