"""Binding for csrc/dt_ops.c and csrc/dt_merge.c.  Every batch from outside is
scanned by C before anything reads it; merge releases the GIL."""
from cpython.bytearray cimport PyByteArray_FromStringAndSize
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from dtcore._native._c cimport (DT_BATCH_HEADER, DT_OP_WRITE, dt_batch_header, dt_batch_info, dt_batch_scan,
                                dt_err, dt_merge, dt_merge_bound, dt_op_read, dt_op_view,
                                dt_op_write, dt_rec_size, raise_status)

cdef const uint8_t EMPTY[1]
# below this a bytes copy costs less than a view object
cdef enum:
    LEND_MIN = 512


cdef dt_batch_info scan_buf(const uint8_t[::1] buf) except *:
    cdef dt_batch_info info
    cdef dt_err err
    cdef size_t n = buf.shape[0]
    cdef int rc = dt_batch_scan(&buf[0] if n else EMPTY, n, &info, &err)
    if rc:
        raise_status(rc, &err, "op batch")
    return info


def scan(const uint8_t[::1] buf not None):
    """Validate a batch; return (count, write payload bytes, writes)."""
    cdef dt_batch_info info = scan_buf(buf)
    return info.count, info.data_bytes, info.writes


def pack(list ops):
    """Encode (kind, file_id, seq, path, arg, data) tuples; the result is
    scanned, so a bad op raises the same error a bad batch from a peer would."""
    cdef size_t total = DT_BATCH_HEADER
    cdef Py_ssize_t i
    cdef const uint8_t[::1] path
    cdef const uint8_t[::1] data
    for op in ops:
        plen = len(op[3])
        dlen = len(op[5])
        if plen > 0xFFFF or dlen > 0xFFFFFFFF:
            raise OverflowError(f"path of {plen} bytes or data of {dlen} bytes is too long")
        total += dt_rec_size(plen, dlen)
    if total - DT_BATCH_HEADER > 0xFFFFFFFF:
        raise OverflowError(f"batch of {total} bytes exceeds 4 GiB")
    out = bytearray(total)
    cdef uint8_t[::1] ov = out
    cdef size_t pos = DT_BATCH_HEADER
    for op in ops:
        path = op[3]
        data = op[5]
        pos += dt_op_write(&ov[pos], <uint8_t>op[0], <uint64_t>op[1], <uint64_t>op[2],
                           <uint64_t>op[4], &path[0] if path.shape[0] else EMPTY,
                           <uint16_t>path.shape[0], &data[0] if data.shape[0] else EMPTY,
                           <uint32_t>data.shape[0])
    dt_batch_header(&ov[0], <uint32_t>len(ops), <uint32_t>(total - DT_BATCH_HEADER))
    scan_buf(ov)
    return out


def unpack(batch not None, bint lend=False):
    """Decode a batch into (kind, file_id, seq, path, arg, data) tuples.
    With lend, the data of a write of LEND_MIN bytes or more is a read-only
    view of ``batch`` (no copy; valid while the batch's buffer is) and
    smaller data is bytes."""
    cdef const uint8_t[::1] buf = batch
    cdef dt_batch_info info = scan_buf(buf)
    cdef dt_op_view op
    cdef size_t pos = DT_BATCH_HEADER, at
    cdef uint32_t i
    whole = memoryview(batch).cast("B").toreadonly() if lend else None
    result = []
    for i in range(info.count):
        dt_op_read(&buf[pos], &op)
        if lend and op.kind == DT_OP_WRITE and op.data_len >= LEND_MIN:
            at = <size_t>(op.data - &buf[0])
            data = whole[at:at + op.data_len]
        else:
            data = op.data[:op.data_len]
        result.append((op.kind, op.file_id, op.seq, op.path[:op.path_len], op.arg, data))
        pos += op.rec_len
    return result


def merge_bound(const uint8_t[::1] buf not None, uint32_t max_chunk):
    """Output bytes that always suffice to merge this batch."""
    cdef dt_batch_info info = scan_buf(buf)
    return dt_merge_bound(buf.shape[0], &info, max_chunk)


def merge(const uint8_t[::1] buf not None, uint32_t max_chunk, uint8_t[::1] into=None):
    """Merge the writes of one batch.  Without `into`, returns a new bytearray;
    with it (a writable buffer of at least merge_bound() bytes, reused across
    calls), fills it and returns the number of bytes used."""
    cdef dt_batch_info info = scan_buf(buf)
    cdef size_t cap = dt_merge_bound(buf.shape[0], &info, max_chunk)
    cdef uint8_t[::1] ov
    if into is not None:
        if <size_t>into.shape[0] < cap:
            raise ValueError(f"output buffer of {into.shape[0]} bytes is smaller than the "
                             f"{cap} this batch may need")
        ov = into
        out = None
    else:
        # uninitialised: every byte up to `used` is written by dt_merge
        out = PyByteArray_FromStringAndSize(NULL, cap)
        ov = out
    cdef size_t used = 0
    cdef dt_err err
    cdef int rc
    with nogil:
        rc = dt_merge(&buf[0], buf.shape[0], &info, max_chunk, &ov[0], cap, &used, &err)
    if rc:
        raise_status(rc, &err, "merge")
    if out is None:
        return used
    del ov
    del out[used:]
    return out
