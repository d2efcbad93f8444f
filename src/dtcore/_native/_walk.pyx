"""Binding for csrc/dt_walk.c: listing a tree into a manifest and comparing
manifests.  The GIL is released for the walk and the comparison.  A walk's
arrays are handed over as they are, not copied (a million-file manifest is
tens of megabytes)."""
from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int64_t, uint8_t, uint16_t, uint64_t
from libc.stdlib cimport free, realloc
from libc.string cimport memset

import numpy as np

from dtcore._native._c cimport (dt_err, dt_manifest_columns, dt_manifest_compare,
                                dt_manifest_index, dt_walk_out, dt_walk_out_free, dt_walker,
                                dt_walker_done, dt_walker_free, dt_walker_next, dt_walker_open,
                                raise_status)

cdef const uint8_t EMPTY[1]


cdef class _Owned:
    """A malloc'd block, read-only through the buffer protocol, freed with
    the last view of it."""
    cdef void *ptr
    cdef Py_ssize_t size

    def __dealloc__(self):
        free(self.ptr)

    def __getbuffer__(self, Py_buffer *view, int flags):
        PyBuffer_FillInfo(view, self, self.ptr, self.size, 1, flags)

    def __releasebuffer__(self, Py_buffer *view):
        pass


cdef object _owned(void **ptr, size_t size):
    """Take *ptr (left NULL) as a read-only memoryview of its first ``size``
    bytes, the slack of its doubling growth given back."""
    cdef _Owned o = _Owned()
    cdef void *p = realloc(ptr[0], size) if size else NULL
    if size and p == NULL:
        p = ptr[0]  # shrinking failed: keep the block as it is
    elif not size:
        free(ptr[0])
    ptr[0] = NULL
    o.ptr = p
    o.size = size
    return memoryview(o)


cdef class Walker:
    """A walk beneath a folder, taken part by part (:meth:`next`); each part
    goes on in the order the whole walk would have listed."""
    cdef dt_walker *w
    cdef bint want_ids

    def __cinit__(self, int root_fd, bytes skip, uint64_t hash_below, bint want_ids):
        cdef dt_err err
        cdef int rc
        cdef const char *skip_c = NULL
        if skip is not None:
            skip_c = skip
        self.want_ids = want_ids
        with nogil:
            rc = dt_walker_open(root_fd, skip_c, hash_below, want_ids, &self.w, &err)
        if rc:
            raise_status(rc, &err, "walk")

    def __dealloc__(self):
        dt_walker_free(self.w)

    @property
    def done(self):
        """Whether everything has been listed."""
        return bool(dt_walker_done(self.w))

    def next(self, size_t max_bytes=<size_t>-1):
        """(records, offsets, ids or None, special) of the next entries, up
        to about ``max_bytes`` of records; ``special`` names what is not
        listed (pipes, sockets, devices), each as a kind byte, its path and a
        NUL.  The records are a read-only memoryview."""
        cdef dt_walk_out out
        cdef dt_err err
        cdef int rc
        memset(&out, 0, sizeof(out))
        with nogil:
            rc = dt_walker_next(self.w, max_bytes, &out, &err)
        try:
            if rc:
                raise_status(rc, &err, "walk")
            recs = _owned(<void **>&out.recs, out.recs_len)
            offsets = np.frombuffer(_owned(<void **>&out.offsets, out.count * 8), dtype=np.uint64)
            ids = np.frombuffer(_owned(<void **>&out.ids, out.count * 24), dtype=np.uint64
                                ).reshape(-1, 3) if self.want_ids else None
            special = (<char *>out.special)[:out.special_len] if out.special_len else b""
            return recs, offsets, ids, special
        finally:
            dt_walk_out_free(&out)


def walk(int root_fd, bytes skip, uint64_t hash_below, bint want_ids):
    """:meth:`Walker.next` of a whole walk beneath ``root_fd``."""
    return Walker(root_fd, skip, hash_below, want_ids).next()


def index(const uint8_t[::1] buf not None):
    """Record offsets of a manifest, its framing checked (-229 if broken)."""
    cdef dt_walk_out out
    cdef dt_err err
    cdef int rc
    cdef size_t n = buf.shape[0]
    memset(&out, 0, sizeof(out))
    with nogil:
        rc = dt_manifest_index(&buf[0] if n else EMPTY, n, &out, &err)
    try:
        if rc:
            raise_status(rc, &err, "manifest")
        offsets = np.empty(out.count, dtype=np.uint64)
        if out.count:
            offsets[:] = <uint64_t[:out.count]>out.offsets
        return offsets
    finally:
        dt_walk_out_free(&out)


def compare(const uint8_t[::1] ours not None, const uint64_t[::1] ours_off not None,
            const uint8_t[::1] theirs not None, const uint64_t[::1] theirs_off not None):
    """(flags, match): DT_CMP_* flags of each of our records and the index of
    the record of the same path in theirs (-1 if none)."""
    cdef size_t on = ours_off.shape[0], tn = theirs_off.shape[0]
    flags = np.zeros(on, dtype=np.uint16)
    match = np.full(on, -1, dtype=np.int64)
    if on == 0:
        return flags, match
    cdef uint16_t[::1] fv = flags
    cdef int64_t[::1] mv = match
    cdef dt_err err
    cdef int rc
    cdef const uint8_t *tp = &theirs[0] if theirs.shape[0] else EMPTY
    cdef const uint64_t *to = &theirs_off[0] if tn else <const uint64_t *>EMPTY
    with nogil:
        rc = dt_manifest_compare(&ours[0], &ours_off[0], on, tp, to, tn, &fv[0], &mv[0], &err)
    if rc:
        raise_status(rc, &err, "manifest compare")
    return flags, match


def columns(const uint8_t[::1] buf not None, const uint64_t[::1] off not None):
    """(kind, size) arrays of a manifest's records."""
    cdef size_t n = off.shape[0]
    kind = np.zeros(n, dtype=np.uint8)
    size = np.zeros(n, dtype=np.int64)
    cdef uint8_t[::1] kv = kind
    cdef int64_t[::1] sv = size
    if n:
        dt_manifest_columns(&buf[0], &off[0], n, &kv[0], &sv[0])
    return kind, size
