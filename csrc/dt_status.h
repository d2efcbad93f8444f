/* Status codes shared by every kernel in csrc/.  Zero is success; the
 * Cython bindings map each negative code to one dtcore exception class. */
#ifndef DT_STATUS_H
#define DT_STATUS_H

#include <stdint.h>
#include <stdlib.h>

enum dt_status {
    DT_OK = 0,
    DT_E_ARG = -1,      /* an argument is out of its allowed range */
    DT_E_NOMEM = -2,    /* allocation failed */
    DT_E_IO = -3,       /* a system call failed; errno is in dt_err.sys_errno */
    DT_E_FORMAT = -4,   /* malformed input (op batch, frame) */
    DT_E_RANGE = -5,    /* an instruction points outside its buffer */
    DT_E_SPACE = -6,    /* the caller's output buffer is too small */
    DT_E_TIMEOUT = -7,  /* a wait ran out before the queue could act */
    DT_E_CLOSED = -8,   /* the queue is closed */
    DT_E_LIMIT = -9,    /* a configured queue limit would be crossed */
    DT_E_DISKFULL = -10, /* the disk's free space would fall below its minimum */
    DT_E_CORRUPT = -11  /* stored data failed its check; it must be remirrored */
};

/* Where and why a call failed, so that the binding can name the record and
 * the numbers in its message.  `what` is a static string, never freed. */
typedef struct dt_err {
    const char *what;
    int64_t index;      /* record / instruction / block index, -1 if none */
    int64_t offset;     /* byte offset in the input, -1 if none */
    int64_t expected;
    int64_t actual;
    int sys_errno;
} dt_err;

static inline int dt_fail(dt_err *e, int code, const char *what, int64_t index,
                          int64_t offset, int64_t expected, int64_t actual)
{
    if (e) {
        e->what = what;
        e->index = index;
        e->offset = offset;
        e->expected = expected;
        e->actual = actual;
    }
    return code;
}

/* Room for `need` elements of `elem` bytes in a doubling array that holds
 * *cap now (starting at `first`).  Returns the array, moved or not, and
 * updates *cap; NULL when memory ran out, leaving the old array as it was. */
static inline void *dt_grow(void *v, size_t *cap, size_t need, size_t elem, size_t first)
{
    if (need <= *cap)
        return v;
    size_t c = *cap ? *cap : first;
    while (c < need)
        c *= 2;
    void *p = realloc(v, c * elem);
    if (p)
        *cap = c;
    return p;
}

#endif
