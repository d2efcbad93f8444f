"""Bindings for csrc/dt_memq.c (the memory queue) and csrc/dt_journal.c (the
disk queue).  Records go in as a list of bytes-like objects and come out as a
list of bytes or as one RecordBatch; the GIL is released while a call waits,
copies or syncs."""
from cpython.buffer cimport (PyBUF_FORMAT, PyBUF_ND, PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release,
                             PyObject_GetBuffer)
from libc.stdint cimport int64_t, uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy

from dtcore._native._c cimport (DT_E_CLOSED, DT_E_SPACE, DT_E_TIMEOUT, DT_J_UNLIMITED, dt_crc32c, dt_crc32c_select, dt_err,
                                dt_journal, dt_journal_cfg, dt_journal_close,
                                dt_journal_commit, dt_journal_commit_mark, dt_journal_counts,
                                dt_journal_mark, dt_journal_mark_get, dt_journal_counts_get,
                                dt_journal_open, dt_journal_pop, dt_journal_prepend,
                                dt_journal_push, dt_memq, dt_memq_bench_pair, dt_memq_close,
                                dt_memq_counts, dt_memq_free, dt_memq_max_record, dt_memq_new,
                                dt_memq_release,
                                dt_memq_pop, dt_memq_push, dt_q_counts, raise_status)

cdef extern from "Python.h":
    bint PyBytes_CheckExact(object)
    char *PyBytes_AS_STRING(object)
    Py_ssize_t PyBytes_GET_SIZE(object)
    object PyBytes_FromStringAndSize(const char *, Py_ssize_t)

cdef const uint8_t EMPTY[1]
cdef char *BYTE_FORMAT = "B"
# A record is at most 4 GiB - 1 bytes; the journal takes up to 1 GiB.
cdef uint64_t MAX_LEN = 0xFFFFFFFF
# Pop buffers a consumer keeps for reuse: one in use, one lent to the records
# being applied, a spare for a consumer holding more.
cdef Py_ssize_t POOL = 3


cdef class _Batch:
    """C arrays over a list of records, holding their buffers until freed."""
    cdef Py_ssize_t n
    cdef const uint8_t **rec
    cdef uint32_t *length
    cdef uint32_t *ops
    cdef uint8_t *kind
    cdef Py_buffer *bufs
    cdef uint8_t *held
    cdef list keep

    def __cinit__(self, list records, ops, kind):
        cdef Py_ssize_t i, size
        self.n = len(records)
        self.keep = records
        self.rec = <const uint8_t **>calloc(self.n + 1, sizeof(uint8_t *))
        self.length = <uint32_t *>calloc(self.n + 1, sizeof(uint32_t))
        self.ops = <uint32_t *>calloc(self.n + 1, sizeof(uint32_t))
        self.kind = <uint8_t *>calloc(self.n + 1, 1)
        self.bufs = <Py_buffer *>calloc(self.n + 1, sizeof(Py_buffer))
        self.held = <uint8_t *>calloc(self.n + 1, 1)
        if not (self.rec and self.length and self.ops and self.kind and self.bufs and self.held):
            raise MemoryError("cannot allocate queue batch tables")
        cdef bint per_record = not isinstance(ops, int)
        cdef uint32_t each = 0 if per_record else ops
        if per_record and len(ops) != self.n:
            raise ValueError(f"{len(ops)} op counts for {self.n} records")
        cdef bint kind_each = not isinstance(kind, int)
        cdef uint8_t one_kind = 0 if kind_each else (1 if kind else 0)
        if kind_each and len(kind) != self.n:
            raise ValueError(f"{len(kind)} kinds for {self.n} records")
        for i in range(self.n):
            r = records[i]
            if PyBytes_CheckExact(r):
                self.rec[i] = <const uint8_t *>PyBytes_AS_STRING(r)
                size = PyBytes_GET_SIZE(r)
            else:
                if isinstance(r, str):
                    raise TypeError(f"record {i}: expected a bytes-like object, got str")
                PyObject_GetBuffer(r, &self.bufs[i], PyBUF_SIMPLE)
                self.held[i] = 1
                self.rec[i] = <const uint8_t *>self.bufs[i].buf if self.bufs[i].len else EMPTY
                size = self.bufs[i].len
            if <uint64_t>size > MAX_LEN:
                raise ValueError(f"record {i} of {size} bytes is too long")
            self.length[i] = <uint32_t>size
            self.ops[i] = ops[i] if per_record else each
            self.kind[i] = (1 if kind[i] else 0) if kind_each else one_kind

    def __dealloc__(self):
        cdef Py_ssize_t i
        if self.held != NULL:
            for i in range(self.n):
                if self.held[i]:
                    PyBuffer_Release(&self.bufs[i])
        free(self.rec)
        free(self.length)
        free(self.ops)
        free(self.kind)
        free(self.bufs)
        free(self.held)


cdef class _PopBuffer:
    """Where popped records land.  A RecordBatch lends it out through the
    buffer protocol, and its consumer takes it again once no view of it is
    left: the pages stay mapped and warm instead of being faulted in and
    copied once more into a fresh bytes object on every pop."""
    cdef uint8_t *data
    cdef size_t cap, slots
    cdef uint32_t *length
    cdef uint32_t *ops
    cdef uint8_t *kind
    cdef Py_ssize_t exports
    cdef Py_ssize_t shape

    cdef int reserve(self, size_t cap, size_t slots) except -1:
        if self.exports > 1:  # one is the pop that calls this
            raise BufferError("a pop buffer still lent out cannot grow")
        if cap > self.cap:
            free(self.data)
            self.data = <uint8_t *>malloc(cap)
            self.cap = cap if self.data else 0
        if slots > self.slots:
            free(self.length); free(self.ops); free(self.kind)
            self.length = <uint32_t *>malloc(slots * sizeof(uint32_t))
            self.ops = <uint32_t *>malloc(slots * sizeof(uint32_t))
            self.kind = <uint8_t *>malloc(slots)
            self.slots = slots if (self.length and self.ops and self.kind) else 0
        if self.cap < cap or self.slots < slots:
            raise MemoryError(f"cannot allocate a pop buffer of {cap} bytes")
        return 0

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("popped records are read-only")
        self.shape = <Py_ssize_t>self.cap
        view.buf = self.data if self.data != NULL else <void *>EMPTY
        view.obj = self
        view.len = self.shape
        view.readonly = 1
        view.itemsize = 1
        view.format = BYTE_FORMAT if flags & PyBUF_FORMAT else NULL
        view.ndim = 1
        view.shape = &self.shape if flags & PyBUF_ND else NULL
        view.strides = NULL
        view.suboffsets = NULL
        view.internal = NULL
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *view):
        self.exports -= 1

    cdef RecordBatch batch(self, size_t n, size_t used):
        cdef RecordBatch b = RecordBatch.__new__(RecordBatch)
        b.data = memoryview(self)[:used]
        ends = PyBytes_FromStringAndSize(NULL, (n + 1) * sizeof(uint64_t))
        meta = PyBytes_FromStringAndSize(NULL, n * sizeof(uint32_t) + n)
        cdef uint64_t *e = <uint64_t *>PyBytes_AS_STRING(ends)
        cdef uint32_t *o = <uint32_t *>PyBytes_AS_STRING(meta)
        cdef size_t i
        e[0] = 0
        for i in range(n):
            e[i + 1] = e[i] + self.length[i]
        if n:
            memcpy(o, self.ops, n * sizeof(uint32_t))
            memcpy(<uint8_t *>(o + n), self.kind, n)
        b.n = n
        b.ends = memoryview(ends).cast("Q")
        b.ops = memoryview(meta)[:n * sizeof(uint32_t)].cast("I")
        b.kinds = memoryview(meta)[n * sizeof(uint32_t):]
        return b

    cdef list records(self, size_t n, bint meta):
        cdef list out = []
        cdef size_t i, at = 0
        for i in range(n):
            b = PyBytes_FromStringAndSize(<const char *>self.data + at, self.length[i])
            at += self.length[i]
            out.append((b, self.ops[i], self.kind[i]) if meta else b)
        return out

    def __dealloc__(self):
        free(self.data); free(self.length); free(self.ops); free(self.kind)


cdef class RecordBatch:
    """Popped records in one read-only buffer: record i is
    data[ends[i]:ends[i + 1]], with ops[i] ops of kind kinds[i] (0
    replication, 1 mirror).  No object is made per record until one is asked
    for, and the buffer goes back to its queue once nothing refers to it."""
    cdef readonly object data, ends, ops, kinds
    cdef Py_ssize_t n

    def __len__(self):
        return self.n

    def __getitem__(self, Py_ssize_t i):
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError("record index out of range")
        return self.data[self.ends[i]:self.ends[i + 1]]

    def __iter__(self):
        view = self.data
        ends = self.ends
        for i in range(self.n):
            yield view[ends[i]:ends[i + 1]]

    def __repr__(self):
        return f"RecordBatch({self.n} records, {len(self.data)} bytes)"


cdef RecordBatch EMPTY_BATCH = _PopBuffer().batch(0, 0)


cdef int64_t to_ns(timeout) except? -2:
    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    return <int64_t>(timeout * 1e9) or 1


cdef dict memq_counts(dt_q_counts *c):
    return {"records": c.records, "rep_ops": c.ops[0], "rep_bytes": c.bytes[0],
            "mir_ops": c.ops[1], "mir_bytes": c.bytes[1], "rep_ops_hw": c.ops_hw[0],
            "rep_bytes_hw": c.bytes_hw[0], "mir_ops_hw": c.ops_hw[1],
            "mir_bytes_hw": c.bytes_hw[1], "pool_total": c.pool_total,
            "pool_used": c.pool_used, "pushed": c.pushed, "popped": c.popped}


cdef class _Consumer:
    """The pop loop both queues share: records land in a pooled buffer that
    grows when the next record is larger, then become bytes objects or a
    RecordBatch lending that buffer."""
    cdef list pool
    cdef bint journal  # whose errors: a journal's name segments and queue files

    def __cinit__(self, *args, **kwargs):
        self.pool = []

    cdef int pop_into(self, _PopBuffer pb, size_t max_records, int64_t ns, size_t *n,
                      size_t *used, dt_err *err) except? -100:
        raise NotImplementedError

    cdef _PopBuffer lend(self):
        """A buffer nothing else refers to: neither a view of it (exports) nor
        a second thread popping at once (a misuse, which gets its own)."""
        cdef _PopBuffer pb
        for pb in self.pool:
            if pb.exports == 0:
                return pb
        pb = _PopBuffer()
        if len(self.pool) < POOL:
            self.pool.append(pb)
        return pb

    cdef object take(self, size_t max_records, int64_t ns, size_t max_bytes, bint meta,
                     bint batch, str context):
        if max_records == 0:
            return EMPTY_BATCH if batch else []
        cdef _PopBuffer pb = self.lend()
        cdef size_t n = 0, used = 0
        cdef dt_err err
        cdef int rc
        pb.exports += 1  # held for the pop itself, so no other pop takes it
        try:
            pb.reserve(max_bytes, max_records)
            rc = self.pop_into(pb, max_records, ns, &n, &used, &err)
            while rc == DT_E_SPACE:
                pb.reserve(<size_t>err.expected, max_records)
                rc = self.pop_into(pb, max_records, ns, &n, &used, &err)
        finally:
            pb.exports -= 1
        if rc == DT_E_TIMEOUT:
            return EMPTY_BATCH if batch else []
        if rc:
            raise_status(rc, &err, context, self.journal)
        return pb.batch(n, used) if batch else pb.records(n, meta)


cdef class MemQ(_Consumer):
    """The native ring queue; dtcore.queues.memory.MemoryQueue is its public face."""
    cdef dt_memq *q

    def __cinit__(self, size_t capacity, uint64_t max_ops):
        cdef dt_err err
        cdef int rc = dt_memq_new(capacity, max_ops, &self.q, &err)
        if rc:
            raise_status(rc, &err, "memory queue")

    def __dealloc__(self):
        dt_memq_free(self.q)

    @property
    def max_record(self):
        return dt_memq_max_record(self.q)

    def push(self, list records, ops=1, kind=0, timeout=None):
        """Push records in order; returns how many went in before the
        timeout (all of them, unless it ran out)."""
        cdef _Batch b = _Batch(records, ops, kind)
        cdef int64_t ns = to_ns(timeout)
        cdef size_t pushed = 0
        cdef dt_err err
        cdef int rc
        with nogil:
            rc = dt_memq_push(self.q, b.n, b.rec, b.length, b.ops, b.kind, ns, &pushed, &err)
        if rc and rc != DT_E_TIMEOUT:
            raise_status(rc, &err, "memory queue push")
        return pushed

    cdef int pop_into(self, _PopBuffer pb, size_t max_records, int64_t ns, size_t *n,
                      size_t *used, dt_err *err) except? -100:
        cdef int rc
        with nogil:
            rc = dt_memq_pop(self.q, max_records, pb.data, pb.cap, pb.length, pb.ops, pb.kind, ns,
                             n, used, err)
        return rc

    def pop(self, size_t max_records=1024, timeout=None, size_t max_bytes=1 << 20, bint meta=False,
            bint batch=False):
        """Up to max_records records (about max_bytes at most; one larger
        record still comes alone); [] when the wait ran out.  With meta, each
        is (record, ops, kind); with batch, one RecordBatch."""
        return self.take(max_records, to_ns(timeout), max_bytes, meta, batch, "memory queue pop")

    def close(self):
        dt_memq_close(self.q)

    def release(self):
        """Once closed: drop what is left and give the ring's memory back now."""
        with nogil:
            dt_memq_release(self.q)

    def counts(self):
        cdef dt_q_counts c
        dt_memq_counts(self.q, &c)
        return memq_counts(&c)


cdef class Journal(_Consumer):
    """The native disk queue; dtcore.queues.journal.DiskQueue is its public face."""
    cdef dt_journal *j
    cdef readonly object directory

    def __cinit__(self, directory, uint64_t segment_bytes, space_max, uint64_t free_min,
                  bint write_through, bint hold=False):
        cdef dt_journal_cfg cfg
        cdef dt_err err
        path = bytes(directory) if isinstance(directory, bytes) else str(directory).encode()
        self.directory = directory
        self.journal = True
        cfg.dir = path
        cfg.segment_bytes = segment_bytes
        cfg.space_max = DT_J_UNLIMITED if space_max is None else <uint64_t>space_max
        cfg.free_min = free_min
        cfg.write_through = write_through
        cfg.hold = hold
        cdef int rc
        with nogil:
            rc = dt_journal_open(&cfg, &self.j, &err)
        if rc:
            self.j = NULL
            raise_status(rc, &err, f"disk queue {directory}", True)

    def __dealloc__(self):
        if self.j != NULL:
            dt_journal_close(self.j, NULL)

    cdef dt_journal *live(self) except NULL:
        if self.j == NULL:
            from dtcore.errors import QueueClosedError
            raise QueueClosedError(f"disk queue {self.directory} is closed")
        return self.j

    def push(self, list records, ops=1, kind=0):
        """Append records; with write-through, returns once they are durable.
        Raises at a limit, after pushing the records before it."""
        cdef dt_journal *j = self.live()
        cdef _Batch b = _Batch(records, ops, kind)
        cdef size_t pushed = 0
        cdef dt_err err
        cdef int rc
        with nogil:
            rc = dt_journal_push(j, b.n, b.rec, b.length, b.ops, b.kind, &pushed, &err)
        if rc:
            raise_status(rc, &err, f"disk queue {self.directory}: push (after {pushed} of {b.n} records)", True)
        return pushed

    def prepend(self, list records, ops=1, kind=0):
        cdef dt_journal *j = self.live()
        cdef _Batch b = _Batch(records, ops, kind)
        cdef dt_err err
        cdef int rc
        with nogil:
            rc = dt_journal_prepend(j, b.n, b.rec, b.length, b.ops, b.kind, &err)
        if rc:
            raise_status(rc, &err, f"disk queue {self.directory}: prepend", True)

    cdef int pop_into(self, _PopBuffer pb, size_t max_records, int64_t ns, size_t *n,
                      size_t *used, dt_err *err) except? -100:
        cdef dt_journal *j = self.live()
        cdef int rc
        with nogil:
            rc = dt_journal_pop(j, max_records, pb.data, pb.cap, pb.length, pb.ops, pb.kind, n,
                                used, err)
        return rc

    def pop(self, size_t max_records=1024, size_t max_bytes=1 << 20, bint meta=False,
            bint batch=False):
        """The oldest records, [] when the journal is empty (it never waits)."""
        self.live()
        return self.take(max_records, 0, max_bytes, meta, batch, f"disk queue {self.directory}: pop")

    def commit(self):
        cdef dt_journal *j = self.live()
        cdef dt_err err
        cdef int rc
        with nogil:
            rc = dt_journal_commit(j, &err)
        if rc:
            raise_status(rc, &err, f"disk queue {self.directory}: commit", True)

    def mark(self):
        """The reader's place after the last pop, as (seq, segno, offset)."""
        cdef dt_journal_mark m
        dt_journal_mark_get(self.live(), &m)
        return (m.seq, m.segno, m.off)

    def commit_mark(self, mark):
        """Consume every record before ``mark`` (held journals)."""
        cdef dt_journal *j = self.live()
        cdef dt_journal_mark m
        m.seq, m.segno, m.off = mark
        cdef dt_err err
        cdef int rc
        with nogil:
            rc = dt_journal_commit_mark(j, &m, &err)
        if rc:
            raise_status(rc, &err, f"disk queue {self.directory}: commit", True)

    def counts(self):
        cdef dt_journal_counts c
        dt_journal_counts_get(self.live(), &c)
        return {"records": c.records, "rep_ops": c.ops[0], "rep_bytes": c.bytes[0],
                "mir_ops": c.ops[1], "mir_bytes": c.bytes[1], "disk_bytes": c.disk_bytes,
                "segments": c.segments, "pushed": c.pushed, "popped": c.popped,
                "syncs": c.syncs, "torn_bytes": c.torn_bytes, "corrupt": bool(c.corrupt),
                "corrupt_segno": c.corrupt_segno, "corrupt_offset": c.corrupt_offset,
                "corrupt_seq": c.corrupt_seq}

    def close(self):
        if self.j == NULL:
            return
        cdef dt_err err
        cdef dt_journal *j = self.j
        self.j = NULL
        cdef int rc
        with nogil:
            rc = dt_journal_close(j, &err)
        if rc:
            raise_status(rc, &err, f"disk queue {self.directory}: close", True)


def crc32c(const uint8_t[::1] data not None, uint32_t crc=0):
    """CRC-32C of data, continuing from crc."""
    return dt_crc32c(crc, &data[0] if data.shape[0] else EMPTY, data.shape[0])


def crc32c_select(int impl):
    return dt_crc32c_select(impl)


def bench_pair(size_t capacity, uint32_t size, size_t batch, uint64_t records):
    """Seconds for two C threads to move records through a fresh queue."""
    cdef double t
    with nogil:
        t = dt_memq_bench_pair(capacity, size, batch, records)
    return t
