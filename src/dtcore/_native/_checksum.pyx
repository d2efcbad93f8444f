"""Binding for csrc/dt_xxh3.c and csrc/dt_checksum.c.  Arguments are checked
by dtcore.model.checksum; every call here releases the GIL on large inputs."""
from libc.stdint cimport uint8_t, uint64_t

import numpy as np

from dtcore._native._c cimport (GIL_RELEASE_MIN, dt_block_count, dt_checksum_buf, dt_checksum_fd,
                                dt_err, dt_ref_read_fd, dt_ref_sum64, dt_xxh3_64, dt_xxh3_select,
                                raise_status)

cdef const uint8_t EMPTY[1]


def xxh3_64(const uint8_t[::1] buf not None):
    cdef size_t n = buf.shape[0]
    cdef const uint8_t *p = &buf[0] if n else EMPTY
    cdef uint64_t h
    if n < GIL_RELEASE_MIN:
        return dt_xxh3_64(p, n)
    with nogil:
        h = dt_xxh3_64(p, n)
    return h


def select_impl(int impl):
    return dt_xxh3_select(impl)


def block_checksums(const uint8_t[::1] buf not None, size_t block):
    cdef size_t n = buf.shape[0]
    out = np.empty(dt_block_count(n, block), dtype=np.uint64)
    if n == 0:
        return out
    cdef uint64_t[::1] ov = out
    cdef dt_err err
    cdef int rc
    with nogil:
        rc = dt_checksum_buf(&buf[0], n, block, &ov[0], &err)
    if rc:
        raise_status(rc, &err, "checksum")
    return out


def fd_checksums(int fd, uint64_t offset, uint64_t length, size_t block, str name):
    out = np.empty(dt_block_count(length, block), dtype=np.uint64)
    if length == 0:
        return out
    cdef uint64_t[::1] ov = out
    cdef dt_err err
    cdef int rc
    with nogil:
        rc = dt_checksum_fd(fd, offset, length, block, &ov[0], &err)
    if rc:
        raise_status(rc, &err, name)
    return out


def ref_sum64(const uint8_t[::1] buf not None):
    """Reference pass for benchmarks: sum the buffer as 64-bit words."""
    cdef size_t n = buf.shape[0]
    cdef uint64_t s = 0
    if n:
        with nogil:
            s = dt_ref_sum64(&buf[0], n)
    return s


def ref_read(int fd, uint64_t length, size_t chunk):
    """Reference pass for benchmarks: read() the file into one reused buffer."""
    cdef dt_err err
    cdef int rc
    with nogil:
        rc = dt_ref_read_fd(fd, length, chunk, &err)
    if rc:
        raise_status(rc, &err, "reference read")
