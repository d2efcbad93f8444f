"""Binding for csrc/dt_delta.c.  Arguments are checked by dtcore.model.delta; the
signature, delta and apply calls release the GIL."""
from libc.stdint cimport int64_t, uint8_t, uint64_t
from libc.stdlib cimport free
from libc.string cimport memcpy

import numpy as np

from dtcore._native._c cimport (dt_block_count, dt_delta_apply, dt_delta_build, dt_delta_check, dt_delta_gather,
                                dt_err, dt_insn, dt_signature_buf, raise_status)

cdef const uint8_t EMPTY[1]
cdef uint64_t EMPTY64[1]


def signature(const uint8_t[::1] buf not None, size_t block):
    cdef size_t n = buf.shape[0]
    cdef size_t nb = dt_block_count(n, block)
    weak = np.empty(nb, dtype=np.uint64)
    strong = np.empty(nb, dtype=np.uint64)
    if n == 0:
        return weak, strong
    cdef uint64_t[::1] wv = weak
    cdef uint64_t[::1] sv = strong
    cdef dt_err err
    cdef int rc
    with nogil:
        rc = dt_signature_buf(&buf[0], n, block, &wv[0], &sv[0], &err)
    if rc:
        raise_status(rc, &err, "signature")
    return weak, strong


def build(const uint64_t[::1] weak not None, const uint64_t[::1] strong not None,
          uint64_t target_size, size_t block, const uint8_t[::1] src not None):
    """Return (instructions as an (n, 2) int64 array, literal bytes)."""
    cdef size_t nb = weak.shape[0]
    cdef size_t slen = src.shape[0]
    cdef const uint64_t *wp = &weak[0] if nb else EMPTY64
    cdef const uint64_t *sp = &strong[0] if nb else EMPTY64
    cdef const uint8_t *srcp = &src[0] if slen else EMPTY
    cdef dt_insn *insns = NULL
    cdef size_t ninsns = 0
    cdef uint64_t nlit = 0
    cdef dt_err err
    cdef uint8_t *litp
    cdef int rc
    with nogil:
        rc = dt_delta_build(wp, sp, nb, target_size, block, srcp, slen, &insns, &ninsns, &nlit, &err)
    if rc:
        raise_status(rc, &err, "delta")
    try:
        table = np.empty((ninsns, 2), dtype=np.int64)
        literals = bytearray(nlit)
        if ninsns:
            memcpy(<void *>np_data(table), insns, ninsns * sizeof(dt_insn))
        if nlit:
            litp = bytearray_ptr(literals)
            with nogil:
                dt_delta_gather(insns, ninsns, srcp, litp)
    finally:
        free(insns)
    return table, literals


cdef void *np_data(object arr):
    cdef int64_t[:, ::1] v = arr
    return &v[0, 0]


cdef uint8_t *bytearray_ptr(bytearray b):
    cdef uint8_t[::1] v = b
    return &v[0]


def apply(const uint8_t[::1] target not None, const int64_t[:, ::1] insns not None,
          const uint8_t[::1] literals not None, size_t out_len):
    """Rebuild the source from the target copy; returns a bytearray."""
    cdef size_t tlen = target.shape[0], llen = literals.shape[0], n = insns.shape[0]
    if n and insns.shape[1] != 2:
        raise ValueError("instructions must have two columns")
    cdef const uint8_t *tp = &target[0] if tlen else EMPTY
    cdef const uint8_t *lp = &literals[0] if llen else EMPTY
    cdef const dt_insn *ip = <const dt_insn *>&insns[0, 0] if n else NULL
    cdef dt_err err
    cdef int rc = dt_delta_check(tlen, ip, n, llen, out_len, &err)
    if rc:  # before allocating: a forged size must not cost memory
        raise_status(rc, &err, "delta apply")
    out = bytearray(out_len)
    cdef uint8_t *op = bytearray_ptr(out) if out_len else <uint8_t *>EMPTY
    with nogil:
        rc = dt_delta_apply(tp, tlen, ip, n, lp, llen, op, out_len, &err)
    if rc:
        raise_status(rc, &err, "delta apply")
    return out
