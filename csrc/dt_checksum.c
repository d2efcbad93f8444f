#define _GNU_SOURCE
#include "dt_checksum.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dt_io.h"
#include "dt_xxh3.h"

/* Scratch reads of ~256 KiB stay in L2, so hashing reads what read() just
 * wrote from cache instead of DRAM. */
#define DT_SCRATCH_TARGET (256 * 1024)

static int checksum_read(int fd, uint64_t offset, uint64_t length, size_t block, uint64_t *out,
                         dt_err *err);

int dt_checksum_buf(const uint8_t *buf, size_t len, size_t block, uint64_t *out, dt_err *err)
{
    if (block < DT_BLOCK_MIN || block > DT_BLOCK_MAX)
        return dt_fail(err, DT_E_ARG, "block size out of range", -1, -1, DT_BLOCK_MAX, (int64_t)block);
    size_t n = (size_t)dt_block_count(len, block);
    for (size_t i = 0; i < n; i++) {
        size_t off = i * block;
        size_t l = len - off < block ? len - off : block;
        out[i] = dt_xxh3_64(buf + off, l);
    }
    return DT_OK;
}

static int read_full(int fd, uint8_t *buf, size_t want, uint64_t at, dt_err *err)
{
    ssize_t got = dt_pread_full(fd, buf, want, at);
    if (got == (ssize_t)want)
        return DT_OK;
    if (err)
        err->sys_errno = got < 0 ? errno : 0;
    int64_t read = got < 0 ? 0 : (int64_t)got;
    return dt_fail(err, DT_E_IO, got < 0 ? "read failed" : "file ended early", -1,
                   (int64_t)at + read, (int64_t)want, read);
}

/* Hashing straight from the page cache through a mapping avoids read()'s
 * copy, which halves the memory traffic and lets two threads scale.  Windows
 * are prefaulted (MAP_POPULATE) so the hash loop takes no page faults; a
 * short file shows up as a size check, never as SIGBUS, because the caller's
 * length is checked against fstat first. */
#define DT_MAP_WINDOW (64u << 20)
/* Below this a range is read instead: mapping, prefaulting and unmapping a
 * few MiB (a checksum request of MaxChecksumBlocks blocks) costs more than
 * the copy saves, and each munmap interrupts the process's other threads. */
#define DT_MAP_MIN (16u << 20)

static int checksum_mapped(int fd, uint64_t offset, uint64_t length, size_t block, uint64_t *out,
                           dt_err *err)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t window = DT_MAP_WINDOW - DT_MAP_WINDOW % block; /* whole blocks per window */
    if (window == 0)
        window = block;
    uint64_t done = 0;
    size_t idx = 0;
    while (done < length) {
        size_t want = length - done < window ? (size_t)(length - done) : window;
        uint64_t at = offset + done;
        size_t lead = (size_t)(at % (uint64_t)page);
        void *m = mmap(NULL, want + lead, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, (off_t)(at - lead));
        if (m == MAP_FAILED)
            return DT_E_IO;
        int rc = dt_checksum_buf((const uint8_t *)m + lead, want, block, out + idx, err);
        munmap(m, want + lead);
        if (rc != DT_OK)
            return rc;
        idx += (size_t)dt_block_count(want, block);
        done += want;
    }
    return DT_OK;
}

int dt_checksum_fd(int fd, uint64_t offset, uint64_t length, size_t block, uint64_t *out, dt_err *err)
{
    if (block < DT_BLOCK_MIN || block > DT_BLOCK_MAX)
        return dt_fail(err, DT_E_ARG, "block size out of range", -1, -1, DT_BLOCK_MAX, (int64_t)block);
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (uint64_t)st.st_size >= offset &&
        (uint64_t)st.st_size - offset >= length && length >= DT_MAP_MIN) {
        if (checksum_mapped(fd, offset, length, block, out, err) == DT_OK)
            return DT_OK;
        /* the mapping failed (e.g. a file system without mmap): read instead */
    }
    return checksum_read(fd, offset, length, block, out, err);
}

static int checksum_read(int fd, uint64_t offset, uint64_t length, size_t block, uint64_t *out, dt_err *err)
{
    size_t per_read = block >= DT_SCRATCH_TARGET ? 1 : DT_SCRATCH_TARGET / block;
    size_t scratch = per_read * block;
    uint8_t *buf = malloc(scratch);
    if (!buf)
        return dt_fail(err, DT_E_NOMEM, "cannot allocate read buffer", -1, -1, (int64_t)scratch, 0);
    posix_fadvise(fd, (off_t)offset, (off_t)length, POSIX_FADV_SEQUENTIAL);
    uint64_t done = 0;
    size_t idx = 0;
    int rc = DT_OK;
    while (done < length) {
        size_t want = length - done < scratch ? (size_t)(length - done) : scratch;
        rc = read_full(fd, buf, want, offset + done, err);
        if (rc != DT_OK)
            break;
        rc = dt_checksum_buf(buf, want, block, out + idx, err);
        if (rc != DT_OK)
            break;
        idx += (size_t)dt_block_count(want, block);
        done += want;
    }
    free(buf);
    return rc;
}

uint64_t dt_ref_sum64(const uint8_t *buf, size_t len)
{
    uint64_t s = 0;
    size_t n = len / 8;
    for (size_t i = 0; i < n; i++) {
        uint64_t v;
        memcpy(&v, buf + 8 * i, 8);
        s += v;
    }
    return s;
}

int dt_ref_read_fd(int fd, uint64_t length, size_t chunk, dt_err *err)
{
    uint8_t *buf = malloc(chunk);
    if (!buf)
        return dt_fail(err, DT_E_NOMEM, "cannot allocate read buffer", -1, -1, (int64_t)chunk, 0);
    uint64_t done = 0;
    int rc = DT_OK;
    while (done < length) {
        size_t want = length - done < chunk ? (size_t)(length - done) : chunk;
        rc = read_full(fd, buf, want, done, err);
        if (rc != DT_OK)
            break;
        done += want;
    }
    free(buf);
    return rc;
}
