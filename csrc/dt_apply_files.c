/* The target's side of dt_smallfiles.h: a new file's run of ops applied at once. */
#define _GNU_SOURCE
#include "dt_smallfiles.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dt_io.h"
#include "dt_le.h"
#include "dt_ops.h"
#include "dt_walk.h"

static int plain_path(const uint8_t *p, size_t n, const uint8_t *reserved, size_t rlen)
{
    if (n == 0 || n > DT_MAX_PATH || p[0] == '/' || memchr(p, 0, n))
        return 0;
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && p[i] != '/')
            continue;
        size_t len = i - start;
        if (len == 0 || len > 255 || (len == 1 && p[start] == '.') ||
            (len == 2 && p[start] == '.' && p[start + 1] == '.'))
            return 0;
        if (start == 0 && rlen && len == rlen && memcmp(p, reserved, rlen) == 0)
            return 0;
        start = i + 1;
    }
    return 1;
}

static int set_attrs(int fd, const uint8_t *a, int owner)
{
    uint32_t mask = get32(a);
    if ((mask & 2) && owner && fchown(fd, get32(a + 8), get32(a + 12)))
        return -1;
    if ((mask & 1) && fchmod(fd, get32(a + 4) & 07777))
        return -1;
    if (mask & 4) {
        int64_t at = (int64_t)get64(a + 16), mt = (int64_t)get64(a + 24);
        struct timespec ts[2] = {{at / 1000000000, at % 1000000000},
                                 {mt / 1000000000, mt % 1000000000}};
        if (at < 0 || mt < 0) /* before 1970: the general path handles the sign */
            return errno = EINVAL, -1;
        if (futimens(fd, ts))
            return -1;
    }
    return 0;
}

int dt_apply_file(int root_fd, const uint8_t *path, uint16_t path_len, const uint8_t *reserved,
                  size_t reserved_len, const dt_file_op *ops, size_t n, int owner, int *sys_errno)
{
    *sys_errno = 0;
    if (n < 2 || ops[0].kind != DT_OP_CREATE || ops[n - 1].kind != DT_OP_SETATTR ||
        ops[n - 1].data_len != DT_ATTRS_SIZE)
        return DT_E_ARG;
    if (!plain_path(path, path_len, reserved, reserved_len))
        return DT_E_ARG;
    char name[DT_MAX_PATH + 1];
    memcpy(name, path, path_len);
    name[path_len] = 0;
    uint32_t mode = (uint32_t)(ops[0].arg & 07777);
    struct open_how how = {
        .flags = O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK,
        .mode = mode ? mode : 0600,
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    int fd = (int)syscall(SYS_openat2, root_fd, name, &how, sizeof(how));
    if (fd < 0) {
        *sys_errno = errno;
        return DT_E_IO;
    }
    struct stat st;
    int rc = fstat(fd, &st);
    if (rc == 0 && !S_ISREG(st.st_mode))
        rc = (errno = EEXIST, -1);
    for (size_t i = 1; rc == 0 && i + 1 < n; i++) {
        const dt_file_op *op = &ops[i];
        if (op->kind == DT_OP_WRITE)
            rc = dt_pwrite_all(fd, op->data, op->data_len, op->arg);
        else if (op->kind == DT_OP_TRUNCATE)
            rc = ftruncate(fd, (off_t)op->arg);
        else
            rc = (errno = EINVAL, -1);
    }
    if (rc == 0)
        rc = set_attrs(fd, ops[n - 1].data, owner);
    int saved = errno;
    close(fd);
    if (rc) {
        *sys_errno = saved;
        return DT_E_IO;
    }
    return DT_OK;
}
