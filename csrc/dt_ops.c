#include "dt_ops.h"

#include <string.h>

#include "dt_le.h"

void dt_op_read(const uint8_t *rec, dt_op_view *op)
{
    op->rec_len = get32(rec);
    op->kind = rec[4];
    op->path_len = get16(rec + 6);
    op->data_len = get32(rec + 8);
    op->file_id = get64(rec + 16);
    op->seq = get64(rec + 24);
    op->arg = get64(rec + 32);
    op->path = rec + DT_REC_HEADER;
    op->data = op->path + op->path_len;
}

size_t dt_op_write(uint8_t *out, uint8_t kind, uint64_t file_id, uint64_t seq, uint64_t arg,
                   const uint8_t *path, uint16_t path_len, const uint8_t *data, uint32_t data_len)
{
    size_t size = dt_rec_size(path_len, data_len);
    put32(out, (uint32_t)size);
    out[4] = kind;
    out[5] = 0;
    put16(out + 6, path_len);
    put32(out + 8, data_len);
    put32(out + 12, 0);
    put64(out + 16, file_id);
    put64(out + 24, seq);
    put64(out + 32, arg);
    memcpy(out + DT_REC_HEADER, path, path_len);
    if (data && data_len) /* NULL data: the caller fills it in place */
        memcpy(out + DT_REC_HEADER + path_len, data, data_len);
    size_t used = DT_REC_HEADER + path_len + data_len;
    memset(out + used, 0, size - used);
    return size;
}

void dt_batch_header(uint8_t *out, uint32_t count, uint32_t body_len)
{
    put32(out, DT_BATCH_MAGIC);
    put16(out + 4, DT_BATCH_VERSION);
    put16(out + 6, 0);
    put32(out + 8, count);
    put32(out + 12, body_len);
}

static int check_name(const uint8_t *p, size_t n) { return n > 0 && memchr(p, 0, n) == NULL; }

int dt_batch_scan(const uint8_t *buf, size_t len, dt_batch_info *info, dt_err *err)
{
    memset(info, 0, sizeof(*info));
    if (len < DT_BATCH_HEADER)
        return dt_fail(err, DT_E_FORMAT, "batch shorter than its header", -1, 0, DT_BATCH_HEADER,
                       (int64_t)len);
    if (get32(buf) != DT_BATCH_MAGIC)
        return dt_fail(err, DT_E_FORMAT, "not an op batch (bad magic)", -1, 0, DT_BATCH_MAGIC,
                       get32(buf));
    if (get16(buf + 4) != DT_BATCH_VERSION)
        return dt_fail(err, DT_E_FORMAT, "unsupported op batch version", -1, 4, DT_BATCH_VERSION,
                       get16(buf + 4));
    if (get16(buf + 6) != 0)
        return dt_fail(err, DT_E_FORMAT, "unknown op batch flags", -1, 6, 0, get16(buf + 6));
    uint32_t count = get32(buf + 8), body = get32(buf + 12);
    if ((uint64_t)body != len - DT_BATCH_HEADER)
        return dt_fail(err, DT_E_FORMAT, "batch length does not match its header", -1, 12,
                       (int64_t)body, (int64_t)(len - DT_BATCH_HEADER));
    size_t pos = DT_BATCH_HEADER;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < DT_REC_HEADER)
            return dt_fail(err, DT_E_FORMAT, "record header cut short", i, (int64_t)pos, DT_REC_HEADER,
                           (int64_t)(len - pos));
        dt_op_view op;
        dt_op_read(buf + pos, &op);
        size_t need = dt_rec_size(op.path_len, op.data_len);
        if (op.rec_len != need)
            return dt_fail(err, DT_E_FORMAT, "record length does not match its fields", i, (int64_t)pos,
                           (int64_t)need, op.rec_len);
        if (need > len - pos)
            return dt_fail(err, DT_E_FORMAT, "record runs past the end of the batch", i, (int64_t)pos,
                           (int64_t)need, (int64_t)(len - pos));
        if (buf[pos + 5] != 0 || get32(buf + pos + 12) != 0)
            return dt_fail(err, DT_E_FORMAT, "reserved record fields are not zero", i, (int64_t)pos, 0,
                           buf[pos + 5]);
        if (!check_name(op.path, op.path_len))
            return dt_fail(err, DT_E_FORMAT, "path is empty or contains NUL", i, (int64_t)pos + 40, 1,
                           op.path_len);
        int64_t want_data = -1; /* -1: any length */
        switch (op.kind) {
        case DT_OP_WRITE:
            if (op.arg > DT_MAX_OFFSET || op.data_len > DT_MAX_OFFSET - op.arg)
                return dt_fail(err, DT_E_FORMAT, "write offset out of range", i, (int64_t)pos + 32,
                               (int64_t)DT_MAX_OFFSET, (int64_t)op.arg);
            info->data_bytes += op.data_len;
            info->writes++;
            break;
        case DT_OP_TRUNCATE:
            if (op.arg > DT_MAX_OFFSET)
                return dt_fail(err, DT_E_FORMAT, "truncate size out of range", i, (int64_t)pos + 32,
                               (int64_t)DT_MAX_OFFSET, (int64_t)op.arg);
            want_data = 0;
            break;
        case DT_OP_SETATTR:
            want_data = DT_ATTRS_SIZE;
            break;
        case DT_OP_RENAME:
        case DT_OP_SYMLINK:
        case DT_OP_LINK:
            if (!check_name(op.data, op.data_len))
                return dt_fail(err, DT_E_FORMAT, "rename, link or symlink target is empty or contains NUL", i,
                               (int64_t)pos, 1, op.data_len);
            break;
        case DT_OP_XATTR:
            if (op.data_len < 4)
                return dt_fail(err, DT_E_FORMAT, "extended attribute set too short", i,
                               (int64_t)pos + 8, 4, op.data_len);
            break;
        case DT_OP_PATCH:
            if (op.arg > DT_MAX_OFFSET || op.data_len < 16)
                return dt_fail(err, DT_E_FORMAT, "patch size out of range or patch too short", i,
                               (int64_t)pos + 32, (int64_t)DT_MAX_OFFSET, (int64_t)op.arg);
            break;
        case DT_OP_CREATE:
        case DT_OP_DELETE:
        case DT_OP_MKDIR:
        case DT_OP_RMDIR:
            want_data = 0;
            break;
        default:
            return dt_fail(err, DT_E_FORMAT, "unknown op kind", i, (int64_t)pos + 4, -1, op.kind);
        }
        if (want_data >= 0 && op.data_len != (uint64_t)want_data)
            return dt_fail(err, DT_E_FORMAT, "wrong data length for this op kind", i, (int64_t)pos + 8,
                           want_data, op.data_len);
        if (op.path_len > info->max_path)
            info->max_path = op.path_len;
        pos += need;
    }
    if (pos != len)
        return dt_fail(err, DT_E_FORMAT, "bytes left after the last record", count, (int64_t)pos,
                       (int64_t)len, (int64_t)pos);
    info->count = count;
    return DT_OK;
}
