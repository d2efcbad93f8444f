/* The disk queue: a journal of append-only segment files in one directory.
 *
 * Segment "dtq<segno:016x>.seg": a 32-byte header (magic "DTQSEG01", segno,
 * first seq, CRC-32C of those) then records, each a 24-byte header
 * (u32 length, u32 ops<<1|kind, u64 seq, u32 CRC-32C of the header's first
 * 16 bytes and the payload, u32 marker "DTQR") and the payload padded to 8.
 * "dtq.pos" keeps the consumer's position (next seq, segno, offset).
 *
 * Opening scans from the position: a damaged record at the end of the last
 * segment with nothing valid after it is a torn write, truncated and
 * counted; any other damage (bad CRC, a missing segment, a break in the
 * sequence numbers) is corruption: pops return every record before it, then
 * DT_E_CORRUPT, and the data must be remirrored. */
#ifndef DT_JOURNAL_H
#define DT_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dt_memq.h"
#include "dt_status.h"

#define DT_J_MAX_SEGMENTS 16384
#define DT_J_UNLIMITED UINT64_MAX

typedef struct dt_journal dt_journal;

typedef struct dt_journal_cfg {
    const char *dir;
    uint64_t segment_bytes; /* QJournalFileSize */
    uint64_t space_max;     /* QJournalSpaceMax in bytes, DT_J_UNLIMITED for none */
    uint64_t free_min;      /* QJournalFreeSpaceMin in bytes */
    int write_through;      /* QLogWriteThrough */
    int hold;               /* records stay until a mark is committed (see below) */
} dt_journal_cfg;

/* A place in the journal: the records before it were popped.  With `hold`
 * set, popping never consumes: the committed position moves only when the
 * consumer commits a mark it took after a pop (a replication batch's mark,
 * once the target acknowledged it), so a crash resends what was popped and
 * not yet acknowledged. */
typedef struct dt_journal_mark {
    uint64_t seq, segno, off;
} dt_journal_mark;

typedef struct dt_journal_counts {
    uint64_t records, ops[2], bytes[2]; /* queued (not yet popped) */
    uint64_t disk_bytes;                /* size of the segment files */
    uint64_t segments, pushed, popped, syncs;
    uint64_t torn_bytes;                /* cut from a torn tail at open */
    int corrupt;                        /* damage found ahead of the reader */
    uint64_t corrupt_segno, corrupt_offset, corrupt_seq;
} dt_journal_counts;

int dt_journal_open(const dt_journal_cfg *cfg, dt_journal **out, dt_err *err);

/* Append n records.  With write-through, returns once they are on disk
 * (fdatasync), sharing each sync with concurrent pushes.  DT_E_LIMIT when
 * QJournalSpaceMax or the segment count would be crossed, DT_E_DISKFULL when
 * free space would drop below QJournalFreeSpaceMin (err->index: records
 * pushed before it). */
int dt_journal_push(dt_journal *j, size_t n, const uint8_t *const *rec, const uint32_t *len,
                    const uint32_t *ops, const uint8_t *kind, size_t *pushed, dt_err *err);

/* Move up to max_records records (that fit out_cap) into out, oldest first;
 * *popped = 0 when empty.  DT_E_SPACE when the first does not fit; DT_E_CORRUPT
 * on reaching damage; DT_E_IO on a read failure. */
int dt_journal_pop(dt_journal *j, size_t max_records, uint8_t *out, size_t out_cap, uint32_t *len,
                   uint32_t *ops, uint8_t *kind, size_t *popped, size_t *used, dt_err *err);

/* Put n records in front of everything queued (in their order), durably.
 * With `hold`, in front of the committed position: records popped since
 * are read again after them. */
int dt_journal_prepend(dt_journal *j, size_t n, const uint8_t *const *rec, const uint32_t *len,
                       const uint32_t *ops, const uint8_t *kind, dt_err *err);

/* Persist the consumer's position; consumed segments are deleted.  With
 * `hold`, a no-op: use dt_journal_commit_mark. */
int dt_journal_commit(dt_journal *j, dt_err *err);

/* The reader's place now (after the last pop). */
void dt_journal_mark_get(dt_journal *j, dt_journal_mark *out);

/* Persist a mark from dt_journal_mark_get as the consumer's position;
 * segments before it are deleted.  A mark behind the committed one is
 * ignored (acknowledgements are cumulative). */
int dt_journal_commit_mark(dt_journal *j, const dt_journal_mark *m, dt_err *err);

void dt_journal_counts_get(dt_journal *j, dt_journal_counts *out);

/* Write out and sync what is buffered, commit (with `hold`, nothing beyond
 * the last committed mark), and free. */
int dt_journal_close(dt_journal *j, dt_err *err);

#endif
