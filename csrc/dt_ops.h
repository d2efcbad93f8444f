/* The replication op model and its packed batch encoding: the one format the
 * merger, the queues and the wire carry.  All integers are little-endian.
 *
 *   batch  := header record*
 *   header := magic u32 'DTOB' | version u16 | flags u16 (0) | count u32 | body_len u32
 *   record := rec_len u32 | kind u8 | flags u8 (0) | path_len u16 | data_len u32 |
 *             reserved u32 (0) | file_id u64 | seq u64 | arg u64 | path | data | pad
 *
 * rec_len covers the whole record and is the 8-aligned size of the fields.
 * `arg` is the write offset, the truncate size or the mode of a create/mkdir.
 * The data of a rename is the new path, of a set-attributes op a dt_attrs, of a
 * symlink the link text, of a hard link the existing path, of a patch the delta. */
#ifndef DT_OPS_H
#define DT_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "dt_status.h"

#define DT_BATCH_MAGIC 0x424F5444u /* "DTOB" as little-endian bytes */
#define DT_BATCH_VERSION 1
#define DT_BATCH_HEADER 16
#define DT_REC_HEADER 40
#define DT_MAX_OFFSET (1ULL << 62)

enum dt_op_kind {
    DT_OP_CREATE = 1,
    DT_OP_WRITE = 2,
    DT_OP_TRUNCATE = 3,
    DT_OP_SETATTR = 4,
    DT_OP_RENAME = 5,
    DT_OP_DELETE = 6,
    DT_OP_MKDIR = 7,
    DT_OP_RMDIR = 8,
    DT_OP_SYMLINK = 9, /* data: the link's text */
    DT_OP_LINK = 10,   /* data: the existing path the new hard link shares */
    DT_OP_PATCH = 11,  /* data: a rolling-delta patch; arg: the rebuilt size */
    DT_OP_XATTR = 12   /* data: the file's whole set of extended attributes */
};

#define DT_ATTRS_SIZE 32 /* mask u32, mode u32, uid u32, gid u32, atime_ns i64, mtime_ns i64 */

typedef struct dt_op_view {
    uint32_t rec_len;
    uint8_t kind;
    uint16_t path_len;
    uint32_t data_len;
    uint64_t file_id, seq, arg;
    const uint8_t *path, *data;
} dt_op_view;

typedef struct dt_batch_info {
    uint32_t count;
    uint64_t data_bytes;   /* sum of write payloads */
    uint32_t max_path;     /* longest path of any record */
    uint32_t writes;
} dt_batch_info;

static inline size_t dt_rec_size(size_t path_len, size_t data_len)
{
    return (DT_REC_HEADER + path_len + data_len + 7) & ~(size_t)7;
}

/* Check every byte of a batch; fill info.  Errors name the record and offset. */
int dt_batch_scan(const uint8_t *buf, size_t len, dt_batch_info *info, dt_err *err);

/* Decode the record at buf (already validated by dt_batch_scan). */
void dt_op_read(const uint8_t *rec, dt_op_view *op);

/* Write one record at out; returns its size.  No validation.  With data
 * NULL the data bytes are left for the caller to fill. */
size_t dt_op_write(uint8_t *out, uint8_t kind, uint64_t file_id, uint64_t seq, uint64_t arg,
                   const uint8_t *path, uint16_t path_len, const uint8_t *data, uint32_t data_len);

void dt_batch_header(uint8_t *out, uint32_t count, uint32_t body_len);

#endif
