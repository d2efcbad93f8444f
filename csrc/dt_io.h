/* Whole reads and writes at an offset, resumed after a short transfer or an
 * interrupted call: the loops every kernel in csrc/ would otherwise repeat. */
#ifndef DT_IO_H
#define DT_IO_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

/* Read up to n bytes at off into p, stopping early only at the end of the
 * file; returns the bytes read, or -1 with errno set. */
static inline ssize_t dt_pread_full(int fd, uint8_t *p, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, p + got, n - got, (off_t)(off + got));
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

/* Write all n bytes of p at off; 0, or -1 with errno set. */
static inline int dt_pwrite_all(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

#endif
