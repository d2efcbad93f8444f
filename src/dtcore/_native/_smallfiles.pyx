"""Binding for csrc/dt_pack_files.c and csrc/dt_apply_files.c: new small
files packed whole on the source and applied as runs on the target, the
system calls made without the GIL."""
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t

from dtcore._native._c cimport (DT_PACKED, DT_OP_CREATE, DT_OP_SETATTR, DT_OP_TRUNCATE, DT_OP_WRITE,
                                dt_apply_file, dt_err, dt_file_op, dt_pack_files, dt_pack_out,
                                raise_status)

# the longest run of one file taken at once; a longer one goes the general way
cdef enum:
    MAX_RUN = 64

cdef const uint8_t EMPTY[1]

PACKED = DT_PACKED  # a file's status after pack(): packed (else left)


def pack(int root_fd, const uint8_t[::1] recs not None, const uint64_t[::1] offsets not None,
         uint64_t max_size, uint32_t block, bint sparse, uint64_t seq0,
         uint8_t[::1] out not None, uint8_t[::1] status not None):
    """Pack the files of manifest records ``recs`` at ``offsets`` into the
    batch buffer ``out``; returns (files looked at, bytes used, ops, payload
    bytes: content and attributes), and ``status`` says per file looked at whether it was packed (0)
    or left for the general path (1)."""
    cdef dt_pack_out res
    cdef dt_err err
    cdef size_t n = offsets.shape[0]
    if status.shape[0] < <Py_ssize_t>n:
        raise ValueError("status shorter than offsets")
    if n == 0:
        return 0, 0, 0, 0
    cdef int rc
    with nogil:
        rc = dt_pack_files(root_fd, &recs[0], &offsets[0], n, max_size, block, sparse, seq0,
                           &out[0], out.shape[0], &status[0], &res, &err)
    if rc:
        raise_status(rc, &err, "pack files")
    return res.consumed, res.used, res.ops, res.data_bytes


def apply_runs(int root_fd, list ops, Py_ssize_t start, bytes reserved, bint owner):
    """Apply, from ``ops[start]`` on, each file's run of CREATE, WRITEs or
    TRUNCATEs and SETATTR (op tuples as model.ops.Op) beneath ``root_fd``;
    returns the index of the first op not applied, which starts a run that
    failed or anything else, for the general applier."""
    cdef dt_file_op run[MAX_RUN]
    cdef Py_ssize_t i = start, j, end, n = len(ops)
    cdef const uint8_t[::1] pv
    cdef const uint8_t[::1] dv
    cdef const uint8_t *rp = reserved
    cdef size_t rlen = len(reserved)
    cdef int rc, sys_errno
    cdef int kind
    keep = []  # the data buffers of the run, held while C reads them
    while i < n:
        op = ops[i]
        if op[0] != DT_OP_CREATE:
            return i
        path = op[3]
        end = -1
        j = i
        while j < n and j - i < MAX_RUN:
            o = ops[j]
            if o[3] != path and j > i:
                break
            kind = o[0]
            if (kind == DT_OP_CREATE) != (j == i):
                break
            if kind == DT_OP_SETATTR:
                end = j
                break
            if kind != DT_OP_CREATE and kind != DT_OP_WRITE and kind != DT_OP_TRUNCATE:
                break
            j += 1
        if end < 0:
            return i
        keep.clear()
        for j in range(i, end + 1):
            o = ops[j]
            run[j - i].kind = o[0]
            run[j - i].arg = o[4]
            data = o[5]
            if len(data):
                dv = data
                keep.append(dv)
                run[j - i].data = &dv[0]
                run[j - i].data_len = <uint32_t>dv.shape[0]
            else:
                run[j - i].data = EMPTY
                run[j - i].data_len = 0
        pv = path
        with nogil:
            rc = dt_apply_file(root_fd, &pv[0], <uint16_t>pv.shape[0], rp, rlen, run,
                               end - i + 1, owner, &sys_errno)
        if rc:
            return i
        i = end + 1
    return i
