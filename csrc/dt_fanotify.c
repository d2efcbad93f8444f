#define _GNU_SOURCE
#include "dt_fanotify.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/fanotify.h>
#include <sys/statfs.h>
#include <unistd.h>

#ifndef FAN_REPORT_TARGET_FID
#define FAN_REPORT_TARGET_FID 0x00001000
#endif
#ifndef FAN_EVENT_INFO_TYPE_OLD_DFID_NAME
#define FAN_EVENT_INFO_TYPE_OLD_DFID_NAME 10
#define FAN_EVENT_INFO_TYPE_NEW_DFID_NAME 12
#endif

static int sys_fail(dt_err *err, const char *what)
{
    if (err)
        err->sys_errno = errno;
    return dt_fail(err, DT_E_IO, what, -1, -1, 0, 0);
}

int dt_fan_init(int unlimited, int *fd_out, dt_err *err)
{
    unsigned flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME |
                     FAN_REPORT_FID | FAN_REPORT_TARGET_FID;
    if (unlimited)
        flags |= FAN_UNLIMITED_QUEUE;
    int fd = fanotify_init(flags, O_RDONLY | O_LARGEFILE);
    if (fd < 0)
        return sys_fail(err, "fanotify_init");
    *fd_out = fd;
    return DT_OK;
}

int dt_fan_mark(int fd, const char *path, uint64_t mask, dt_err *err)
{
    if (fanotify_mark(fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, mask, AT_FDCWD, path) < 0)
        return sys_fail(err, "fanotify_mark");
    return DT_OK;
}

/* A handle record: fsid, then struct file_handle; returns its length in the
 * key format (the two are laid out the same way in the event). */
static uint32_t handle_len(const uint8_t *p, const uint8_t *end)
{
    struct file_handle fh;
    if (end - p < (ptrdiff_t)(8 + sizeof fh))
        return 0;
    memcpy(&fh, p + 8, sizeof fh);
    uint64_t n = 8 + sizeof fh + (uint64_t)fh.handle_bytes;
    if (n > DT_FAN_KEY_MAX || (ptrdiff_t)n > end - p)
        return 0;
    return (uint32_t)n;
}

int dt_fan_parse(const uint8_t *buf, size_t len, dt_fan_event *out, size_t cap, size_t *n,
                 dt_err *err)
{
    size_t pos = 0, count = 0;
    while (len - pos >= FAN_EVENT_METADATA_LEN) {
        struct fanotify_event_metadata md;
        memcpy(&md, buf + pos, sizeof md);
        if (md.event_len < FAN_EVENT_METADATA_LEN || md.event_len > len - pos)
            return dt_fail(err, DT_E_FORMAT, "fanotify event length", (int64_t)count,
                           (int64_t)pos, 0, md.event_len);
        if (md.vers != FANOTIFY_METADATA_VERSION)
            return dt_fail(err, DT_E_FORMAT, "fanotify version", (int64_t)count, (int64_t)pos,
                           FANOTIFY_METADATA_VERSION, md.vers);
        if (count == cap)
            return dt_fail(err, DT_E_SPACE, "fanotify events", (int64_t)count, (int64_t)pos,
                           (int64_t)cap, (int64_t)count + 1);
        if (md.fd >= 0)
            close(md.fd);
        dt_fan_event *ev = &out[count++];
        memset(ev, 0, sizeof *ev);
        ev->mask = md.mask;
        ev->pid = md.pid;
        const uint8_t *p = buf + pos + md.metadata_len;
        const uint8_t *end = buf + pos + md.event_len;
        while (end - p >= (ptrdiff_t)sizeof(struct fanotify_event_info_header)) {
            struct fanotify_event_info_header hdr;
            memcpy(&hdr, p, sizeof hdr);
            if (hdr.len < sizeof hdr || hdr.len > (size_t)(end - p))
                return dt_fail(err, DT_E_FORMAT, "fanotify info record", (int64_t)count - 1,
                               p - buf, 0, hdr.len);
            const uint8_t *body = p + sizeof hdr, *rec_end = p + hdr.len;
            uint32_t hl = handle_len(body, rec_end);
            uint32_t off = (uint32_t)(body - buf);
            if (hl && hdr.info_type == FAN_EVENT_INFO_TYPE_FID) {
                ev->obj_off = off;
                ev->obj_len = hl;
            } else if (hl && (hdr.info_type == FAN_EVENT_INFO_TYPE_DFID_NAME ||
                              hdr.info_type == FAN_EVENT_INFO_TYPE_OLD_DFID_NAME ||
                              hdr.info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME ||
                              hdr.info_type == FAN_EVENT_INFO_TYPE_DFID)) {
                const uint8_t *name = body + hl;
                size_t room = (size_t)(rec_end - name);
                size_t nl = room ? strnlen((const char *)name, room) : 0;
                int second = hdr.info_type == FAN_EVENT_INFO_TYPE_NEW_DFID_NAME;
                if (second) {
                    ev->dir2_off = off;
                    ev->dir2_len = hl;
                    ev->name2_off = (uint32_t)(name - buf);
                    ev->name2_len = (uint32_t)nl;
                } else {
                    ev->dir_off = off;
                    ev->dir_len = hl;
                    ev->name_off = (uint32_t)(name - buf);
                    ev->name_len = (uint32_t)nl;
                }
            }
            p = rec_end;
        }
        pos += md.event_len;
    }
    *n = count;
    return DT_OK;
}

int dt_fan_key(const char *path, uint8_t *out, uint32_t *len, dt_err *err)
{
    struct statfs sf;
    if (statfs(path, &sf) < 0)
        return sys_fail(err, "statfs");
    union {
        struct file_handle fh;
        uint8_t raw[DT_FAN_KEY_MAX];
    } h;
    int mount_id;
    h.fh.handle_bytes = 128; /* MAX_HANDLE_SZ */
    if (name_to_handle_at(AT_FDCWD, path, &h.fh, &mount_id, 0) < 0)
        return sys_fail(err, "name_to_handle_at");
    memcpy(out, &sf.f_fsid, 8);
    uint32_t n = (uint32_t)(sizeof(struct file_handle) + h.fh.handle_bytes);
    memcpy(out + 8, h.raw, n);
    *len = 8 + n;
    return DT_OK;
}

int dt_fan_open(int mount_fd, const uint8_t *key, uint32_t len, int flags, int *fd_out,
                dt_err *err)
{
    union {
        struct file_handle fh;
        uint8_t raw[DT_FAN_KEY_MAX];
    } h;
    if (len < 8 + sizeof(struct file_handle) || len > DT_FAN_KEY_MAX)
        return dt_fail(err, DT_E_ARG, "fanotify handle length", -1, -1, DT_FAN_KEY_MAX, len);
    memcpy(h.raw, key + 8, len - 8);
    if (8 + sizeof(struct file_handle) + h.fh.handle_bytes != len)
        return dt_fail(err, DT_E_FORMAT, "fanotify handle", -1, -1, len - 8,
                       (int64_t)(sizeof(struct file_handle) + h.fh.handle_bytes));
    int fd = open_by_handle_at(mount_fd, &h.fh, flags | O_CLOEXEC);
    if (fd < 0)
        return sys_fail(err, "open_by_handle_at");
    *fd_out = fd;
    return DT_OK;
}

int dt_fan_path(int mount_fd, const uint8_t *key, uint32_t len, char *out, size_t cap,
                size_t *out_len, dt_err *err)
{
    int fd;
    int rc = dt_fan_open(mount_fd, key, len, O_PATH, &fd, err);
    if (rc)
        return rc;
    char link[64];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, out, cap);
    int saved = errno;
    close(fd);
    if (n < 0) {
        errno = saved;
        return sys_fail(err, "readlink");
    }
    if ((size_t)n >= cap)
        return dt_fail(err, DT_E_SPACE, "path", -1, -1, (int64_t)cap, n);
    *out_len = (size_t)n;
    return DT_OK;
}
