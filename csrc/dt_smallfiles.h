/* Small files in bulk, one system call sequence per file and no interpreter
 * work between them: the source packs new small files whole into an op batch
 * (CREATE, WRITE..., SETATTR each), and the target applies such runs of ops.
 * Anything out of the ordinary (a file that is not regular, has grown too
 * large, is sparse, cannot be opened; a path a plain lookup cannot take) is
 * left to the general code, which knows the rules for it. */
#ifndef DT_SMALLFILES_H
#define DT_SMALLFILES_H

#include <stddef.h>
#include <stdint.h>

#include "dt_status.h"

/* Per listed file given to dt_pack_files. */
enum { DT_PACKED = 0, DT_LEFT = 1 };

typedef struct dt_pack_out {
    size_t consumed;     /* listed files looked at, packed or left */
    size_t used;         /* bytes of batch written, header included */
    uint32_t ops;        /* ops in the batch */
    uint64_t data_bytes; /* payload of the ops: content and attributes */
} dt_pack_out;

/* Pack the files named by manifest records (csrc/dt_walk.h) recs+offsets[i],
 * opened beneath root_fd, into an op batch at out (out_cap bytes): for each,
 * CREATE (mode 0600), its content as WRITEs of at most `block` bytes, and a
 * SETATTR of the record's mode, owner and times.  Ops are numbered from seq0.
 * status[i] says what became of each file: DT_PACKED, or DT_LEFT (not
 * regular, over max_size, sparse with `sparse` set, or failing to open or
 * read) for the caller's general path.  Stops before the first file that
 * would not fit; at least one file is always looked at. */
int dt_pack_files(int root_fd, const uint8_t *recs, const uint64_t *offsets, size_t n,
                  uint64_t max_size, uint32_t block, int sparse, uint64_t seq0, uint8_t *out,
                  size_t out_cap, uint8_t *status, dt_pack_out *res, dt_err *err);

/* Bytes a batch needs for one file of path_len and size bytes. */
size_t dt_pack_bound(size_t path_len, uint64_t size, uint32_t block);

/* One op of a file's run on the target: a WRITE (data at arg), a TRUNCATE
 * (to arg), or the CREATE (mode in arg) and SETATTR (data: dt_attrs) that
 * open and close the run. */
typedef struct dt_file_op {
    uint8_t kind;
    uint64_t arg;
    const uint8_t *data;
    uint32_t data_len;
} dt_file_op;

/* Apply one run CREATE, (WRITE | TRUNCATE)*, SETATTR of the file at path
 * beneath root_fd: opened with openat2 and RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS, so no symlink anywhere is followed and nothing outside
 * the root is reached; the owner is set only when `owner` is set (root).
 * The path must be plain (no empty, "." or ".." component, none over 255
 * bytes) and not start with the component `reserved` (may be empty).
 * Returns DT_OK, DT_E_ARG for a path refused, DT_E_IO (errno in *sys_errno)
 * when anything failed or what is at path is not a regular file: the run
 * may then be partly applied, and the caller applies it again its own way. */
int dt_apply_file(int root_fd, const uint8_t *path, uint16_t path_len, const uint8_t *reserved,
                  size_t reserved_len, const dt_file_op *ops, size_t n, int owner, int *sys_errno);

#endif
