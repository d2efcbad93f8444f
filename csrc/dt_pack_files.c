/* The source's side of dt_smallfiles.h: new small files packed whole. */
#define _GNU_SOURCE
#include "dt_smallfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dt_io.h"
#include "dt_le.h"
#include "dt_ops.h"
#include "dt_walk.h"

size_t dt_pack_bound(size_t path_len, uint64_t size, uint32_t block)
{
    uint64_t chunks = block ? (size + block - 1) / block : 1;
    return dt_rec_size(path_len, 0) + chunks * dt_rec_size(path_len, block < size ? block : size) +
           dt_rec_size(path_len, DT_ATTRS_SIZE);
}

/* One file's records at out; returns bytes written, 0 if it must be left. */
static size_t pack_one(int fd, const struct stat *st, const uint8_t *rec, const uint8_t *path,
                       uint16_t plen, uint32_t block, uint64_t *seq, uint32_t *ops,
                       uint64_t *data_bytes, uint8_t *out)
{
    uint8_t *p = out;
    uint64_t size = (uint64_t)st->st_size, pos = 0;
    uint32_t nops = 0;
    p += dt_op_write(p, DT_OP_CREATE, 0, (*seq)++, 0600, path, plen, NULL, 0);
    nops++;
    while (pos < size) {
        uint32_t want = size - pos < block ? (uint32_t)(size - pos) : block;
        uint8_t *data = p + DT_REC_HEADER + plen;
        ssize_t got = dt_pread_full(fd, data, want, pos);
        if (got < 0)
            return 0;
        if (got == 0)
            break; /* shrunk since the stat: what is there is sent */
        p += dt_op_write(p, DT_OP_WRITE, 0, (*seq)++, pos, path, plen, NULL, (uint32_t)got);
        nops++;
        pos += (uint64_t)got;
        if ((uint32_t)got < want)
            break;
    }
    if (pos < size) { /* the file ended early: its size is what was read */
        p += dt_op_write(p, DT_OP_TRUNCATE, 0, (*seq)++, pos, path, plen, NULL, 0);
        nops++;
    }
    uint8_t attrs[DT_ATTRS_SIZE];
    put32(attrs, 1 | 2 | 4); /* mode, owner, times: as Attrs.MODE | OWNER | TIMES */
    memcpy(attrs + 4, rec + 4, 4);   /* mode */
    memcpy(attrs + 8, rec + 32, 8);  /* uid, gid */
    memcpy(attrs + 16, rec + 24, 8); /* atime_ns */
    memcpy(attrs + 24, rec + 16, 8); /* mtime_ns */
    p += dt_op_write(p, DT_OP_SETATTR, 0, (*seq)++, 0, path, plen, attrs, DT_ATTRS_SIZE);
    nops++;
    *ops += nops;
    *data_bytes += pos + DT_ATTRS_SIZE;
    return (size_t)(p - out);
}

int dt_pack_files(int root_fd, const uint8_t *recs, const uint64_t *offsets, size_t n,
                  uint64_t max_size, uint32_t block, int sparse, uint64_t seq0, uint8_t *out,
                  size_t out_cap, uint8_t *status, dt_pack_out *res, dt_err *err)
{
    memset(res, 0, sizeof(*res));
    if (block == 0 || out_cap < DT_BATCH_HEADER)
        return dt_fail(err, DT_E_ARG, "pack files: block and output size", -1, -1, 1,
                       (int64_t)out_cap);
    size_t used = DT_BATCH_HEADER;
    uint64_t seq = seq0;
    char name[DT_MAX_PATH + 1];
    for (size_t i = 0; i < n; i++) {
        const uint8_t *rec = recs + offsets[i];
        uint16_t plen = get16(rec);
        const uint8_t *path = rec + DT_MREC;
        uint64_t listed = (uint64_t)(int64_t)get64(rec + 8);
        size_t room = dt_pack_bound(plen, listed > max_size ? max_size : listed, block);
        if (used + room > out_cap) {
            if (i)
                break;
            return dt_fail(err, DT_E_ARG, "pack files: output smaller than one file", 0, -1,
                           (int64_t)(used + room), (int64_t)out_cap);
        }
        res->consumed = i + 1;
        status[i] = DT_LEFT;
        memcpy(name, path, plen);
        name[plen] = 0;
        int fd = openat(root_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        if (fd < 0)
            continue;
        struct stat st;
        /* the bound was for the listed size: a file that grew past it goes the general way */
        int ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size <= max_size &&
                 dt_pack_bound(plen, (uint64_t)st.st_size, block) <= room &&
                 !(sparse && (uint64_t)st.st_blocks * 512 < (uint64_t)st.st_size);
        if (ok) {
            uint64_t s = seq;
            uint32_t ops = res->ops;
            uint64_t data = res->data_bytes;
            size_t w = pack_one(fd, &st, rec, path, plen, block, &s, &ops, &data, out + used);
            if (w) {
                used += w;
                seq = s;
                res->ops = ops;
                res->data_bytes = data;
                status[i] = DT_PACKED;
            }
        }
        close(fd);
    }
    dt_batch_header(out, res->ops, (uint32_t)(used - DT_BATCH_HEADER));
    res->used = used;
    return DT_OK;
}
