"""Binding for csrc/dt_fanotify.c: a fanotify group with a filesystem mark,
its events parsed into tuples of (mask, pid, folder key, name, new folder
key, new name, object key); keys are bytes, absent parts None."""
from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from dtcore._native._c cimport (DT_FAN_KEY_MAX, dt_err, dt_fan_event, dt_fan_init, dt_fan_key,
                                dt_fan_mark, dt_fan_open, dt_fan_parse, dt_fan_path,
                                raise_status)

# the largest event is a rename: header, three handles and two names
cdef enum:
    _EVENT_MIN = 24


def init(bint unlimited):
    """A new notification group's descriptor (non-blocking, close-on-exec)."""
    cdef int fd = -1
    cdef dt_err err
    cdef int rc = dt_fan_init(unlimited, &fd, &err)
    if rc:
        raise_status(rc, &err, "fanotify")
    return fd


def mark(int fd, path, uint64_t mask):
    """Watch the whole file system that holds ``path``."""
    cdef bytes p = path if isinstance(path, bytes) else str(path).encode()
    cdef dt_err err
    cdef int rc = dt_fan_mark(fd, p, mask, &err)
    if rc:
        raise_status(rc, &err, p.decode(errors="replace"))


def parse(const uint8_t[::1] buf not None):
    """The events of one read() of the group."""
    cdef size_t length = buf.shape[0], n = 0, i
    cdef size_t cap = length // _EVENT_MIN + 1
    cdef dt_err err
    cdef dt_fan_event *ev = <dt_fan_event *>malloc(cap * sizeof(dt_fan_event))
    if ev == NULL:
        raise MemoryError()
    cdef const uint8_t *base = &buf[0] if length else NULL
    cdef dt_fan_event *e
    cdef int rc
    try:
        rc = dt_fan_parse(base, length, ev, cap, &n, &err)
        if rc:
            raise_status(rc, &err, "fanotify events")
        out = []
        for i in range(n):
            e = &ev[i]
            out.append((
                e.mask, e.pid,
                (<const char *>base)[e.dir_off:e.dir_off + e.dir_len] if e.dir_len else None,
                (<const char *>base)[e.name_off:e.name_off + e.name_len] if e.dir_len else None,
                (<const char *>base)[e.dir2_off:e.dir2_off + e.dir2_len] if e.dir2_len else None,
                (<const char *>base)[e.name2_off:e.name2_off + e.name2_len] if e.dir2_len else None,
                (<const char *>base)[e.obj_off:e.obj_off + e.obj_len] if e.obj_len else None))
        return out
    finally:
        free(ev)


def key(path):
    """The key of what is at ``path`` now (a final link is not followed)."""
    cdef bytes p = path if isinstance(path, bytes) else str(path).encode()
    cdef uint8_t out[DT_FAN_KEY_MAX]
    cdef uint32_t n = 0
    cdef dt_err err
    cdef int rc = dt_fan_key(p, out, &n, &err)
    if rc:
        raise_status(rc, &err, p.decode(errors="replace"))
    return (<const char *>out)[:n]


def open(int mount_fd, bytes key, int flags):
    """A descriptor of ``key``'s object (raises FileAccessError, with ESTALE
    when it no longer exists)."""
    cdef int fd = -1
    cdef dt_err err
    cdef int rc = dt_fan_open(mount_fd, key, len(key), flags, &fd, &err)
    if rc:
        raise_status(rc, &err, "fanotify handle")
    return fd


def path(int mount_fd, bytes key):
    """The path of ``key``'s object now; None when it no longer exists."""
    cdef char out[4096]
    cdef size_t n = 0
    cdef dt_err err
    cdef int rc = dt_fan_path(mount_fd, key, len(key), out, sizeof(out), &n, &err)
    if rc:
        if err.sys_errno in (2, 116):  # ENOENT, ESTALE: it is gone
            return None
        raise_status(rc, &err, "fanotify handle")
    return out[:n]
