/* Listing a tree into a manifest, and comparing two manifests.
 *
 * A manifest is a run of records, each a 48-byte header followed by its
 * relative path (no terminating NUL), all little-endian:
 *
 *   path_len u16 | kind u8 | has_hash u8 | mode u32 | size i64 | mtime_ns i64 |
 *   atime_ns i64 | uid u32 | gid u32 | hash u64
 *
 * The walk lists a folder's entries in byte order of their names, then each
 * sub-folder's contents in the same order, so folders always come before what
 * they hold.  Two walks of trees holding the same paths list them in the same
 * order, which lets a peer compare two listings part by part.  Every folder is opened relative to its parent's handle with
 * O_NOFOLLOW, and nothing is followed through a symlink. */
#ifndef DT_WALK_H
#define DT_WALK_H

#include <stddef.h>
#include <stdint.h>

#include "dt_status.h"

#define DT_MREC 48
#define DT_MAX_PATH 4096
enum { DT_KIND_FILE = 1, DT_KIND_DIR = 2, DT_KIND_LINK = 3 };

/* Flags from dt_manifest_compare for each of our records. */
enum {
    DT_CMP_THERE = 1,    /* their manifest has this path */
    DT_CMP_KIND = 2,     /* ... as the same kind */
    DT_CMP_SIZE = 4,
    DT_CMP_MTIME = 8,
    DT_CMP_MODE = 16,
    DT_CMP_HASHED = 32,  /* both records carry a hash */
    DT_CMP_HASH = 64,    /* ... and the hashes are equal */
    DT_CMP_OWNER = 128,  /* same uid and gid */
    DT_CMP_NEWER = 256   /* their mtime is at least ours */
};

typedef struct dt_walk_out {
    uint8_t *recs;       /* the manifest records (malloc'd) */
    size_t recs_len, recs_cap;
    uint64_t *offsets;   /* byte offset of each record in recs */
    size_t count, offsets_cap;
    uint64_t *ids;       /* with want_ids: ino, dev, nlink of each record */
    size_t ids_cap;
    /* what is not replicated (pipes, sockets, devices): for each, a kind
     * byte ('p', 's', 'c' or 'b'), its path and a NUL */
    uint8_t *special;
    size_t special_len, special_cap;
} dt_walk_out;

/* A walk that can stop after a part and go on from there. */
typedef struct dt_walker dt_walker;

/* Start listing everything beneath the folder open as root_fd (a duplicate
 * of it is kept, so the caller may close its own).  A top-level entry named
 * `skip` (may be NULL) is left out.  Regular files smaller than hash_below
 * carry the XXH3-64 of their content; with want_ids, out->ids gets the
 * inode, device and link count of each entry.  Entries that vanish or cannot
 * be read while listing are left out; pipes, sockets and devices are named
 * in out->special instead.  Only a failure to read the root itself, or
 * memory running out, fails. */
int dt_walker_open(int root_fd, const char *skip, uint64_t hash_below, int want_ids,
                   dt_walker **out, dt_err *err);
/* Append the next entries to out until its records reach max_bytes (the
 * last may pass it) or the walk ends; dt_walker_done tells which. */
int dt_walker_next(dt_walker *w, size_t max_bytes, dt_walk_out *out, dt_err *err);
int dt_walker_done(const dt_walker *w);
void dt_walker_free(dt_walker *w);

void dt_walk_out_free(dt_walk_out *out);

/* Check a manifest's framing (lengths, kinds, every path after the one
 * before it in walk order: no path twice) and list its record offsets
 * into out->offsets / out->count (recs is not touched). */
int dt_manifest_index(const uint8_t *buf, size_t len, dt_walk_out *out, dt_err *err);

/* For each of our records, DT_CMP_* flags against the record of the same
 * path in theirs, and the index of that record in match (-1 if none). */
int dt_manifest_compare(const uint8_t *ours, const uint64_t *ours_off, size_t ours_n,
                        const uint8_t *theirs, const uint64_t *theirs_off, size_t theirs_n,
                        uint16_t *flags, int64_t *match, dt_err *err);

/* Kind and size of each record. */
void dt_manifest_columns(const uint8_t *buf, const uint64_t *off, size_t n, uint8_t *kind,
                         int64_t *size);

#endif
