"""Binding for csrc/dt_compress.c: frames a list of payloads in one call, with
the GIL released while lz4 runs.  Blocks are compressed a slice at a time into
a reused scratch arena (cache-warm, never page-faulted again) and copied out
at their compressed size; raw bodies are the caller's own buffers."""
from cpython.buffer cimport PyBUF_SIMPLE, PyBuffer_Release, PyObject_GetBuffer
from cpython.object cimport PyObject, PyTypeObject
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uint8_t, uint32_t
from libc.stdlib cimport calloc, free, malloc

from dtcore._native._c cimport (DT_FRAME_HEADER, DT_FRAME_LZ4, GIL_RELEASE_MIN,
                                dt_compress_blocks, dt_frame_header, dt_lz4_bound,
                                dt_lz4_state_size)

cdef extern from "Python.h":
    PyObject *new_bytes "PyBytes_FromStringAndSize"(const char *, Py_ssize_t) except NULL
    char *bytes_data "PyBytes_AS_STRING"(PyObject *)
    bint PyBytes_CheckExact(object)
    char *PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    PyObject *PyType_GenericAlloc(PyTypeObject *, Py_ssize_t) except NULL
    void PyTuple_SET_ITEM(PyObject *, Py_ssize_t, PyObject *)
    void decref "Py_DECREF"(PyObject *)
    void xdecref "Py_XDECREF"(PyObject *)

cdef const uint8_t EMPTY[1]
# lz4 output of one slice of blocks lands here before it is copied out.
cdef enum:
    ARENA_MIN = 1 << 20


cdef class _Scratch:
    """An lz4 state and an output arena, reused across calls."""
    cdef void *state
    cdef uint8_t *arena
    cdef size_t cap

    def __cinit__(self):
        self.state = malloc(dt_lz4_state_size())
        self.arena = <uint8_t *>malloc(ARENA_MIN)
        self.cap = ARENA_MIN
        if not self.state or not self.arena:
            raise MemoryError("cannot allocate compression scratch")

    cdef int reserve(self, size_t need) except -1:
        if need <= self.cap:
            return 0
        cdef uint8_t *arena = <uint8_t *>malloc(need)
        if not arena:
            raise MemoryError(f"cannot allocate {need} bytes of compression scratch")
        free(self.arena)
        self.arena = arena
        self.cap = need
        return 0

    def __dealloc__(self):
        free(self.state)
        free(self.arena)


# Idle scratch objects; popped and pushed under the GIL, so each call (in any
# thread) owns the one it holds.
cdef list _idle = []


cdef object framed(type payload, uint8_t flags, uint32_t original, uint32_t stored, PyObject *body):
    """A payload (tuple subclass) of a fresh header and `body`, whose
    reference it takes."""
    cdef PyObject *header = NULL
    cdef PyObject *t = NULL
    try:
        header = new_bytes(NULL, DT_FRAME_HEADER)
        t = PyType_GenericAlloc(<PyTypeObject *>payload, 2)
    except BaseException:
        xdecref(header)
        decref(body)
        raise
    dt_frame_header(<uint8_t *>bytes_data(header), flags, original, stored)
    PyTuple_SET_ITEM(t, 0, header)
    PyTuple_SET_ITEM(t, 1, body)
    result = <object>t
    decref(t)  # <object> added a reference; the tuple was born with one
    return result


def compress_blocks(list blocks, Py_ssize_t min_size, int acceleration, bint skip,
                    Py_ssize_t max_payload, type payload, view):
    """Frame each block: lz4 when it is at least `min_size` bytes, `skip` is
    false and lz4 makes it smaller; raw otherwise.  `view(obj, name)` turns a
    non-bytes block into a byte memoryview (and raises for what is not one)."""
    cdef Py_ssize_t n = len(blocks), i, first, last
    views = [b if PyBytes_CheckExact(b) else view(b, "blocks") for b in blocks]
    cdef const uint8_t **src = <const uint8_t **>calloc(n + 1, sizeof(uint8_t *))
    cdef uint8_t **dst = <uint8_t **>calloc(n + 1, sizeof(uint8_t *))
    cdef uint32_t *length = <uint32_t *>calloc(n + 1, sizeof(uint32_t))
    cdef uint32_t *stored = <uint32_t *>calloc(n + 1, sizeof(uint32_t))
    cdef Py_buffer *bufs = <Py_buffer *>calloc(n + 1, sizeof(Py_buffer))
    cdef uint8_t *held = <uint8_t *>calloc(n + 1, 1)
    cdef _Scratch scratch = _idle.pop() if _idle else _Scratch()
    cdef size_t used, bound, work
    cdef Py_ssize_t size
    try:
        if not (src and dst and length and stored and bufs and held):
            raise MemoryError("cannot allocate compression tables")
        for i in range(n):
            v = views[i]
            if PyBytes_CheckExact(v):
                src[i] = <const uint8_t *>PyBytes_AS_STRING(v)
                size = PyBytes_GET_SIZE(v)
            else:
                PyObject_GetBuffer(v, &bufs[i], PyBUF_SIMPLE)
                held[i] = 1
                src[i] = <const uint8_t *>bufs[i].buf if bufs[i].len else EMPTY
                size = bufs[i].len
            if size > max_payload:
                from dtcore.errors import InvalidParameterError
                raise InvalidParameterError(
                    f"block {i}: payload of {size} bytes exceeds the limit of {max_payload}")
            length[i] = <uint32_t>size
        out = []
        first = 0
        while first < n:
            # a slice of blocks whose worst-case output fits the arena
            used = work = 0
            last = first
            while last < n:
                bound = dt_lz4_bound(length[last])
                if last > first and used + bound > scratch.cap:
                    break
                scratch.reserve(bound)
                if not skip and length[last] >= min_size and length[last] > 0:
                    dst[last] = scratch.arena + used
                    used += bound
                    work += length[last]
                last += 1
            if work >= GIL_RELEASE_MIN:
                with nogil:
                    dt_compress_blocks(scratch.state, acceleration, last - first, &src[first],
                                       &length[first], &dst[first], &stored[first])
            else:
                dt_compress_blocks(scratch.state, acceleration, last - first, &src[first],
                                   &length[first], &dst[first], &stored[first])
            for i in range(first, last):
                if stored[i]:
                    out.append(framed(payload, DT_FRAME_LZ4, length[i], stored[i],
                                      new_bytes(<const char *>dst[i], stored[i])))
                else:
                    v = views[i]
                    Py_INCREF(v)
                    out.append(framed(payload, 0, length[i], length[i], <PyObject *>v))
            first = last
        return out
    finally:
        for i in range(n):
            if held[i]:
                PyBuffer_Release(&bufs[i])
        free(src); free(dst); free(length); free(stored); free(bufs); free(held)
        if len(_idle) < 4:
            _idle.append(scratch)
