# The C kernels of csrc/, declared once.  Every function here is plain C and
# safe to call without the GIL.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t


cdef extern from "dt_status.h" nogil:
    # The status codes, declared here once; bindings and dtcore.errors name
    # them through status_name() and never by number.
    enum dt_status:
        DT_OK
        DT_E_ARG
        DT_E_NOMEM
        DT_E_IO
        DT_E_FORMAT
        DT_E_RANGE
        DT_E_SPACE
        DT_E_TIMEOUT
        DT_E_CLOSED
        DT_E_LIMIT
        DT_E_DISKFULL
        DT_E_CORRUPT

    ctypedef struct dt_err:
        const char *what
        int64_t index
        int64_t offset
        int64_t expected
        int64_t actual
        int sys_errno


cdef extern from "dt_xxh3.h" nogil:
    uint64_t dt_xxh3_64(const uint8_t *data, size_t length)
    int dt_xxh3_select(int impl)


cdef extern from "dt_checksum.h" nogil:
    uint64_t dt_block_count(uint64_t length, uint64_t block)
    int dt_checksum_buf(const uint8_t *buf, size_t length, size_t block, uint64_t *out, dt_err *err)
    int dt_checksum_fd(int fd, uint64_t offset, uint64_t length, size_t block, uint64_t *out,
                       dt_err *err)
    uint64_t dt_ref_sum64(const uint8_t *buf, size_t length)
    int dt_ref_read_fd(int fd, uint64_t length, size_t chunk, dt_err *err)


cdef extern from "dt_delta.h" nogil:
    ctypedef struct dt_insn:
        int64_t target_offset
        int64_t length
    int dt_signature_buf(const uint8_t *buf, size_t length, size_t block, uint64_t *weak,
                         uint64_t *strong, dt_err *err)
    int dt_delta_build(const uint64_t *weak, const uint64_t *strong, size_t nblocks,
                       uint64_t target_size, size_t block, const uint8_t *src, size_t src_len,
                       dt_insn **insns, size_t *ninsns, uint64_t *literal_bytes, dt_err *err)
    void dt_delta_gather(const dt_insn *insns, size_t ninsns, const uint8_t *src, uint8_t *out)
    int dt_delta_check(size_t target_len, const dt_insn *insns, size_t ninsns,
                       size_t literals_len, size_t out_len, dt_err *err)
    int dt_delta_apply(const uint8_t *target, size_t target_len, const dt_insn *insns,
                       size_t ninsns, const uint8_t *literals, size_t literals_len, uint8_t *out,
                       size_t out_len, dt_err *err)


cdef extern from "dt_ops.h" nogil:
    enum:
        DT_OP_CREATE
        DT_OP_WRITE
        DT_OP_TRUNCATE
        DT_OP_SETATTR
    ctypedef struct dt_batch_info:
        uint32_t count
        uint64_t data_bytes
        uint32_t max_path
        uint32_t writes
    ctypedef struct dt_op_view:
        uint32_t rec_len
        uint8_t kind
        uint16_t path_len
        uint32_t data_len
        uint64_t file_id
        uint64_t seq
        uint64_t arg
        const uint8_t *path
        const uint8_t *data
    size_t DT_BATCH_HEADER
    size_t dt_rec_size(size_t path_len, size_t data_len)
    int dt_batch_scan(const uint8_t *buf, size_t length, dt_batch_info *info, dt_err *err)
    void dt_op_read(const uint8_t *rec, dt_op_view *op)
    size_t dt_op_write(uint8_t *out, uint8_t kind, uint64_t file_id, uint64_t seq, uint64_t arg,
                       const uint8_t *path, uint16_t path_len, const uint8_t *data,
                       uint32_t data_len)
    void dt_batch_header(uint8_t *out, uint32_t count, uint32_t body_len)


cdef extern from "dt_merge.h" nogil:
    size_t dt_merge_bound(size_t in_len, const dt_batch_info *info, uint32_t max_chunk)
    int dt_merge(const uint8_t *inp, size_t in_len, const dt_batch_info *info, uint32_t max_chunk,
                 uint8_t *out, size_t out_cap, size_t *out_len, dt_err *err)


cdef extern from "dt_compress.h" nogil:
    size_t DT_FRAME_HEADER
    uint8_t DT_FRAME_LZ4
    size_t dt_lz4_state_size()
    size_t dt_lz4_bound(size_t n)
    void dt_compress_blocks(void *state, int acceleration, size_t n, const uint8_t *const *src,
                            const uint32_t *length, uint8_t *const *dst, uint32_t *stored)
    void dt_frame_header(uint8_t *out, uint8_t flags, uint32_t original, uint32_t stored)


cdef extern from "dt_crc32c.h" nogil:
    uint32_t dt_crc32c(uint32_t crc, const void *data, size_t length)
    int dt_crc32c_select(int impl)


cdef extern from "dt_memq.h" nogil:
    ctypedef struct dt_memq:
        pass
    ctypedef struct dt_q_counts:
        uint64_t records
        uint64_t ops[2]
        uint64_t bytes[2]
        uint64_t ops_hw[2]
        uint64_t bytes_hw[2]
        uint64_t pool_total
        uint64_t pool_used
        uint64_t pushed
        uint64_t popped
    int dt_memq_new(size_t capacity, uint64_t max_ops, dt_memq **out, dt_err *err)
    void dt_memq_free(dt_memq *q)
    size_t dt_memq_max_record(const dt_memq *q)
    int dt_memq_push(dt_memq *q, size_t n, const uint8_t *const *rec, const uint32_t *length,
                     const uint32_t *ops, const uint8_t *kind, int64_t timeout_ns, size_t *pushed,
                     dt_err *err)
    int dt_memq_pop(dt_memq *q, size_t max_records, uint8_t *out, size_t out_cap,
                    uint32_t *length, uint32_t *ops, uint8_t *kind, int64_t timeout_ns,
                    size_t *popped, size_t *used, dt_err *err)
    void dt_memq_close(dt_memq *q)
    void dt_memq_release(dt_memq *q)
    void dt_memq_counts(dt_memq *q, dt_q_counts *out)
    double dt_memq_bench_pair(size_t capacity, uint32_t size, size_t batch, uint64_t records)


cdef extern from "dt_journal.h" nogil:
    ctypedef struct dt_journal:
        pass
    ctypedef struct dt_journal_cfg:
        const char *dir
        uint64_t segment_bytes
        uint64_t space_max
        uint64_t free_min
        int write_through
        int hold
    ctypedef struct dt_journal_mark:
        uint64_t seq
        uint64_t segno
        uint64_t off
    ctypedef struct dt_journal_counts:
        uint64_t records
        uint64_t ops[2]
        uint64_t bytes[2]
        uint64_t disk_bytes
        uint64_t segments
        uint64_t pushed
        uint64_t popped
        uint64_t syncs
        uint64_t torn_bytes
        int corrupt
        uint64_t corrupt_segno
        uint64_t corrupt_offset
        uint64_t corrupt_seq
    uint64_t DT_J_UNLIMITED
    int dt_journal_open(const dt_journal_cfg *cfg, dt_journal **out, dt_err *err)
    int dt_journal_push(dt_journal *j, size_t n, const uint8_t *const *rec,
                        const uint32_t *length, const uint32_t *ops, const uint8_t *kind,
                        size_t *pushed, dt_err *err)
    int dt_journal_pop(dt_journal *j, size_t max_records, uint8_t *out, size_t out_cap,
                       uint32_t *length, uint32_t *ops, uint8_t *kind, size_t *popped,
                       size_t *used, dt_err *err)
    int dt_journal_prepend(dt_journal *j, size_t n, const uint8_t *const *rec,
                           const uint32_t *length, const uint32_t *ops, const uint8_t *kind,
                           dt_err *err)
    int dt_journal_commit(dt_journal *j, dt_err *err)
    void dt_journal_mark_get(dt_journal *j, dt_journal_mark *out)
    int dt_journal_commit_mark(dt_journal *j, const dt_journal_mark *m, dt_err *err)
    void dt_journal_counts_get(dt_journal *j, dt_journal_counts *out)
    int dt_journal_close(dt_journal *j, dt_err *err)


cdef extern from "dt_walk.h" nogil:
    ctypedef struct dt_walk_out:
        uint8_t *recs
        size_t recs_len
        uint64_t *offsets
        size_t count
        uint64_t *ids
        uint8_t *special
        size_t special_len
    ctypedef struct dt_walker:
        pass
    int dt_walker_open(int root_fd, const char *skip, uint64_t hash_below, int want_ids,
                       dt_walker **out, dt_err *err)
    int dt_walker_next(dt_walker *w, size_t max_bytes, dt_walk_out *out, dt_err *err)
    int dt_walker_done(const dt_walker *w)
    void dt_walker_free(dt_walker *w)
    void dt_walk_out_free(dt_walk_out *out)
    int dt_manifest_index(const uint8_t *buf, size_t length, dt_walk_out *out, dt_err *err)
    int dt_manifest_compare(const uint8_t *ours, const uint64_t *ours_off, size_t ours_n,
                            const uint8_t *theirs, const uint64_t *theirs_off, size_t theirs_n,
                            uint16_t *flags, int64_t *match, dt_err *err)
    void dt_manifest_columns(const uint8_t *buf, const uint64_t *off, size_t n, uint8_t *kind,
                             int64_t *size)


# Below this many bytes, releasing the GIL costs more than it frees.
cdef enum:
    GIL_RELEASE_MIN = 65536


cdef inline str status_name(int rc):
    """The name dtcore.errors.native_error keys its mapping by."""
    if rc == DT_E_ARG:
        return "ARG"
    if rc == DT_E_NOMEM:
        return "NOMEM"
    if rc == DT_E_IO:
        return "IO"
    if rc == DT_E_FORMAT:
        return "FORMAT"
    if rc == DT_E_RANGE:
        return "RANGE"
    if rc == DT_E_SPACE:
        return "SPACE"
    if rc == DT_E_TIMEOUT:
        return "TIMEOUT"
    if rc == DT_E_CLOSED:
        return "CLOSED"
    if rc == DT_E_LIMIT:
        return "LIMIT"
    if rc == DT_E_DISKFULL:
        return "DISKFULL"
    if rc == DT_E_CORRUPT:
        return "CORRUPT"
    return f"status {rc}"


cdef inline int raise_status(int rc, dt_err *err, str context, bint journal=False) except -1:
    """Raise the dtcore exception for a failed csrc call (rc != 0).  For the
    journal, err.index is a segment number and an I/O failure is a queue
    file's."""
    from dtcore.errors import native_error
    what = err.what.decode() if err.what != NULL else "failure"
    raise native_error(status_name(rc), what, err.index, err.offset, err.expected, err.actual,
                       err.sys_errno, context, journal)


cdef extern from "dt_smallfiles.h" nogil:
    enum:
        DT_PACKED
    ctypedef struct dt_pack_out:
        size_t consumed
        size_t used
        uint32_t ops
        uint64_t data_bytes
    ctypedef struct dt_file_op:
        uint8_t kind
        uint64_t arg
        const uint8_t *data
        uint32_t data_len
    int dt_pack_files(int root_fd, const uint8_t *recs, const uint64_t *offsets, size_t n,
                      uint64_t max_size, uint32_t block, int sparse, uint64_t seq0, uint8_t *out,
                      size_t out_cap, uint8_t *status, dt_pack_out *res, dt_err *err)
    size_t dt_pack_bound(size_t path_len, uint64_t size, uint32_t block)
    int dt_apply_file(int root_fd, const uint8_t *path, uint16_t path_len,
                      const uint8_t *reserved, size_t reserved_len, const dt_file_op *ops,
                      size_t n, int owner, int *sys_errno)


cdef extern from "dt_fanotify.h" nogil:
    enum:
        DT_FAN_KEY_MAX
    ctypedef struct dt_fan_event:
        uint64_t mask
        int32_t pid
        uint32_t dir_off, dir_len, name_off, name_len
        uint32_t dir2_off, dir2_len, name2_off, name2_len
        uint32_t obj_off, obj_len
    int dt_fan_init(int unlimited, int *fd_out, dt_err *err)
    int dt_fan_mark(int fd, const char *path, uint64_t mask, dt_err *err)
    int dt_fan_parse(const uint8_t *buf, size_t len, dt_fan_event *out, size_t cap, size_t *n,
                     dt_err *err)
    int dt_fan_key(const char *path, uint8_t *out, uint32_t *len, dt_err *err)
    int dt_fan_open(int mount_fd, const uint8_t *key, uint32_t len, int flags, int *fd_out,
                    dt_err *err)
    int dt_fan_path(int mount_fd, const uint8_t *key, uint32_t len, char *out, size_t cap,
                    size_t *out_len, dt_err *err)
