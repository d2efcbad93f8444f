/* fanotify with a filesystem mark and directory-handle-plus-name reporting:
 * one mark sees every change on a file system, named by the handle of the
 * folder it happened in and the entry's name.  Handles resolve to paths with
 * open_by_handle_at.  Linux 5.17+ (FAN_RENAME), CAP_SYS_ADMIN. */
#ifndef DT_FANOTIFY_H
#define DT_FANOTIFY_H

#include <stddef.h>
#include <stdint.h>

#include "dt_status.h"

/* A key names one object: the file system id (8 bytes) then the kernel's
 * struct file_handle (handle_bytes, handle_type, f_handle). */
#define DT_FAN_KEY_MAX 144 /* fsid, header, MAX_HANDLE_SZ */

/* One parsed event; offsets point into the buffer given to dt_fan_parse
 * (length 0: the record is absent).  The name of an event on a folder
 * itself is ".". */
typedef struct dt_fan_event {
    uint64_t mask;
    int32_t pid;
    uint32_t dir_off, dir_len, name_off, name_len;     /* where (the old place of a rename) */
    uint32_t dir2_off, dir2_len, name2_off, name2_len; /* a rename's new place */
    uint32_t obj_off, obj_len;                         /* the object itself */
} dt_fan_event;

/* A notification group reporting folder handles, names and the object's own
 * handle, non-blocking.  `unlimited`: no queue limit (else the kernel's
 * max_queued_events applies and overflow is reported). */
int dt_fan_init(int unlimited, int *fd_out, dt_err *err);

/* Watch the whole file system holding `path` for `mask`. */
int dt_fan_mark(int fd, const char *path, uint64_t mask, dt_err *err);

/* Parse `len` bytes read from the group into at most `cap` events. */
int dt_fan_parse(const uint8_t *buf, size_t len, dt_fan_event *out, size_t cap, size_t *n,
                 dt_err *err);

/* The key of the object at `path` (not following a final link). */
int dt_fan_key(const char *path, uint8_t *out, uint32_t *len, dt_err *err);

/* A descriptor of the object of `key` (open flags as for open(2)). */
int dt_fan_open(int mount_fd, const uint8_t *key, uint32_t len, int flags, int *fd_out,
                dt_err *err);

/* The path of the object of `key` now, through `mount_fd` (any descriptor on
 * its file system); DT_E_IO with ESTALE when it no longer exists. */
int dt_fan_path(int mount_fd, const uint8_t *key, uint32_t len, char *out, size_t cap,
                size_t *out_len, dt_err *err);

#endif
