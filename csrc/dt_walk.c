#define _GNU_SOURCE
#include "dt_walk.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dt_le.h"
#include "dt_xxh3.h"

/* One folder on the walker's stack: its names, and how far it has got. */
typedef struct frame frame;

struct dt_walker {
    frame *stack;
    size_t depth, cap;
    char *skip;     /* a top-level name left out, or NULL */
    uint64_t hash_below;
    int want_ids;
    uint8_t *buf;   /* file content being hashed */
    size_t buf_cap;
    char path[DT_MAX_PATH + 1];
};

/* One folder's names, gathered before any is used. */
typedef struct names {
    char *arena;
    size_t len, cap;
    size_t *at;     /* offsets into arena, then sorted */
    size_t n, at_cap;
    char **sorted;
} names;

struct frame {
    int dfd;        /* owned */
    names s;
    char *is_dir;   /* per sorted name, once listed */
    size_t i;       /* the next name to list, then to descend into */
    int descending;
    size_t plen;    /* length of this folder's path in the walker's path */
};

static void names_free(names *s)
{
    free(s->arena);
    free(s->at);
    free(s->sorted);
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Read the folder's names (without . and ..) and sort them bytewise. */
static int read_names(int dfd, names *s)
{
    int fd = dup(dfd);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    rewinddir(d); /* the handle's position is shared with whoever read it before */
    struct dirent *de;
    errno = 0;
    while ((de = readdir(d)) != NULL) {
        const char *nm = de->d_name;
        if (nm[0] == '.' && (nm[1] == 0 || (nm[1] == '.' && nm[2] == 0)))
            continue;
        size_t k = strlen(nm) + 1;
        char *a = dt_grow(s->arena, &s->cap, s->len + k, 1, 4096);
        size_t *at = dt_grow(s->at, &s->at_cap, s->n + 1, sizeof(size_t), 64);
        if (!a || !at) {
            if (a)
                s->arena = a;
            if (at)
                s->at = at;
            closedir(d);
            errno = ENOMEM;
            return -1;
        }
        s->arena = a;
        s->at = at;
        memcpy(s->arena + s->len, nm, k);
        s->at[s->n++] = s->len;
        s->len += k;
    }
    int failed = errno != 0;
    closedir(d);
    if (failed)
        return -1;
    s->sorted = malloc((s->n ? s->n : 1) * sizeof(char *));
    if (!s->sorted) {
        errno = ENOMEM;
        return -1;
    }
    for (size_t i = 0; i < s->n; i++)
        s->sorted[i] = s->arena + s->at[i];
    qsort(s->sorted, s->n, sizeof(char *), cmp_name);
    return 0;
}

/* XXH3-64 of a small file read through its folder; 0 when it cannot be read. */
static int hash_file(dt_walker *c, int dfd, const char *name, uint64_t size, uint64_t *out)
{
    if (size + 1 > c->buf_cap) {
        uint8_t *b = realloc(c->buf, size + 1);
        if (!b)
            return -1;
        c->buf = b;
        c->buf_cap = size + 1;
    }
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    size_t got = 0;
    /* read one byte past the listed size, as a file growing meanwhile would */
    while (got < size + 1) {
        ssize_t r = read(fd, c->buf + got, size + 1 - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r < 0) {
                close(fd);
                return 0;
            }
            break;
        }
        got += (size_t)r;
    }
    close(fd);
    *out = dt_xxh3_64(c->buf, got);
    return 1;
}

static int emit(dt_walker *c, dt_walk_out *o, dt_err *err, size_t plen,
                const struct stat *st, int kind, int has_hash, uint64_t hash)
{
    uint8_t *r = dt_grow(o->recs, &o->recs_cap, o->recs_len + DT_MREC + plen, 1, 1 << 16);
    if (!r)
        return dt_fail(err, DT_E_NOMEM, "manifest records", -1, -1, -1, -1);
    o->recs = r;
    uint64_t *off = dt_grow(o->offsets, &o->offsets_cap, o->count + 1, sizeof(uint64_t), 1024);
    if (!off)
        return dt_fail(err, DT_E_NOMEM, "manifest index", -1, -1, -1, -1);
    o->offsets = off;
    if (c->want_ids) {
        uint64_t *ids = dt_grow(o->ids, &o->ids_cap, 3 * (o->count + 1), sizeof(uint64_t), 3072);
        if (!ids)
            return dt_fail(err, DT_E_NOMEM, "manifest ids", -1, -1, -1, -1);
        o->ids = ids;
        ids[3 * o->count] = (uint64_t)st->st_ino;
        ids[3 * o->count + 1] = (uint64_t)st->st_dev;
        ids[3 * o->count + 2] = (uint64_t)st->st_nlink;
    }
    off[o->count++] = o->recs_len;
    uint8_t *p = r + o->recs_len;
    put16(p, (uint16_t)plen);
    p[2] = (uint8_t)kind;
    p[3] = (uint8_t)has_hash;
    put32(p + 4, (uint32_t)(st->st_mode & 07777));
    put64(p + 8, kind == DT_KIND_FILE ? (uint64_t)st->st_size : 0);
    put64(p + 16, (uint64_t)((int64_t)st->st_mtim.tv_sec * 1000000000 + st->st_mtim.tv_nsec));
    put64(p + 24, (uint64_t)((int64_t)st->st_atim.tv_sec * 1000000000 + st->st_atim.tv_nsec));
    put32(p + 32, (uint32_t)st->st_uid);
    put32(p + 36, (uint32_t)st->st_gid);
    put64(p + 40, has_hash ? hash : 0);
    memcpy(p + DT_MREC, c->path, plen);
    o->recs_len += DT_MREC + plen;
    return DT_OK;
}

static int note_special(dt_walker *c, dt_walk_out *o, dt_err *err, size_t plen, mode_t mode)
{
    if (o->special_len + plen + 2 > o->special_cap) {
        size_t cap = o->special_cap ? o->special_cap * 2 : 4096;
        while (cap < o->special_len + plen + 2)
            cap *= 2;
        uint8_t *p = realloc(o->special, cap);
        if (!p)
            return dt_fail(err, DT_E_NOMEM, "special file names", -1, -1, -1, -1);
        o->special = p;
        o->special_cap = cap;
    }
    uint8_t *p = o->special + o->special_len;
    p[0] = S_ISFIFO(mode) ? 'p' : S_ISSOCK(mode) ? 's' : S_ISCHR(mode) ? 'c' : 'b';
    memcpy(p + 1, c->path, plen);
    p[plen + 1] = 0;
    o->special_len += plen + 2;
    return DT_OK;
}

/* Push the folder open as dfd (taken over, closed on every path) whose
 * path fills c->path[0..plen).  A folder that cannot be read is left out
 * (the next walk sees it), unless it is the root. */
static int push(dt_walker *c, int dfd, size_t plen, dt_err *err)
{
    frame *st = dt_grow(c->stack, &c->cap, c->depth + 1, sizeof(frame), 16);
    if (!st) {
        close(dfd);
        return dt_fail(err, DT_E_NOMEM, "walk stack", -1, -1, -1, -1);
    }
    c->stack = st;
    frame *f = &st[c->depth];
    memset(f, 0, sizeof(*f));
    if (read_names(dfd, &f->s) < 0) {
        int e = errno;
        names_free(&f->s);
        close(dfd);
        if (e == ENOMEM)
            return dt_fail(err, DT_E_NOMEM, "folder names", -1, -1, -1, -1);
        if (c->depth == 0) {
            if (err)
                err->sys_errno = e;
            return dt_fail(err, DT_E_IO, "list the root folder", -1, -1, -1, -1);
        }
        return DT_OK;
    }
    f->is_dir = calloc(f->s.n ? f->s.n : 1, 1);
    if (!f->is_dir) {
        names_free(&f->s);
        close(dfd);
        return dt_fail(err, DT_E_NOMEM, "folder names", -1, -1, -1, -1);
    }
    f->dfd = dfd;
    f->plen = plen;
    c->depth++;
    return DT_OK;
}

static void pop(dt_walker *c)
{
    frame *f = &c->stack[--c->depth];
    close(f->dfd);
    free(f->is_dir);
    names_free(&f->s);
}

/* List the next name of the folder on top, into out. */
static int list_one(dt_walker *c, frame *f, dt_walk_out *out, dt_err *err)
{
    size_t i = f->i++;
    const char *nm = f->s.sorted[i];
    size_t k = strlen(nm);
    size_t base = f->plen ? f->plen + 1 : 0;
    if (c->depth == 1 && c->skip && strcmp(nm, c->skip) == 0)
        return DT_OK;
    if (base + k > DT_MAX_PATH)
        return DT_OK; /* deeper than any path a peer may name */
    struct stat st;
    if (fstatat(f->dfd, nm, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return DT_OK; /* vanished while walking */
    int kind = S_ISREG(st.st_mode) ? DT_KIND_FILE : S_ISDIR(st.st_mode) ? DT_KIND_DIR
             : S_ISLNK(st.st_mode) ? DT_KIND_LINK : 0;
    if (f->plen)
        c->path[f->plen] = '/';
    memcpy(c->path + base, nm, k);
    if (!kind) /* sockets, pipes and devices are not replicated: say which */
        return note_special(c, out, err, base + k, st.st_mode);
    uint64_t hash = 0;
    int has_hash = 0;
    if (kind == DT_KIND_FILE && (uint64_t)st.st_size < c->hash_below) {
        has_hash = hash_file(c, f->dfd, nm, (uint64_t)st.st_size, &hash);
        if (has_hash < 0)
            return dt_fail(err, DT_E_NOMEM, "file content", -1, -1, -1, -1);
    }
    f->is_dir[i] = kind == DT_KIND_DIR;
    return emit(c, out, err, base + k, &st, kind, has_hash, hash);
}

/* Enter the next sub-folder of the folder on top, or leave it when none is left. */
static int descend(dt_walker *c, frame *f, dt_err *err)
{
    while (f->i < f->s.n && !f->is_dir[f->i])
        f->i++;
    if (f->i == f->s.n) {
        pop(c);
        return DT_OK;
    }
    const char *nm = f->s.sorted[f->i++];
    size_t k = strlen(nm);
    size_t base = f->plen ? f->plen + 1 : 0;
    int fd = openat(f->dfd, nm, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return DT_OK;
    if (f->plen)
        c->path[f->plen] = '/';
    memcpy(c->path + base, nm, k);
    return push(c, fd, base + k, err); /* f may move: not used after */
}

int dt_walker_open(int root_fd, const char *skip, uint64_t hash_below, int want_ids,
                   dt_walker **out, dt_err *err)
{
    dt_walker *c = calloc(1, sizeof(*c));
    if (!c || (skip && !(c->skip = strdup(skip)))) {
        free(c);
        return dt_fail(err, DT_E_NOMEM, "walker", -1, -1, -1, -1);
    }
    c->hash_below = hash_below;
    c->want_ids = want_ids;
    int fd = fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
    int rc = fd < 0 ? dt_fail(err, DT_E_IO, "list the root folder", -1, -1, -1, -1)
                    : push(c, fd, 0, err);
    if (rc) {
        if (fd < 0 && err)
            err->sys_errno = errno;
        dt_walker_free(c);
        return rc;
    }
    *out = c;
    return DT_OK;
}

int dt_walker_next(dt_walker *c, size_t max_bytes, dt_walk_out *out, dt_err *err)
{
    int rc = DT_OK;
    while (rc == DT_OK && c->depth && out->recs_len < max_bytes) {
        frame *f = &c->stack[c->depth - 1];
        if (!f->descending && f->i < f->s.n) {
            rc = list_one(c, f, out, err);
        } else {
            if (!f->descending) {
                f->descending = 1;
                f->i = 0;
            }
            rc = descend(c, f, err);
        }
    }
    return rc;
}

int dt_walker_done(const dt_walker *c)
{
    return c->depth == 0;
}

void dt_walker_free(dt_walker *c)
{
    if (!c)
        return;
    while (c->depth)
        pop(c);
    free(c->stack);
    free(c->skip);
    free(c->buf);
    free(c);
}

void dt_walk_out_free(dt_walk_out *out)
{
    free(out->recs);
    free(out->offsets);
    free(out->ids);
    free(out->special);
    memset(out, 0, sizeof(*out));
}

/* <0, 0 or >0 as path a comes before, with or after path b in a walk: at
 * the first folder where they part, an entry of that folder itself comes
 * before anything beneath its sub-folders, and names compare bytewise. */
static int walk_order(const uint8_t *a, size_t an, const uint8_t *b, size_t bn)
{
    size_t n = an < bn ? an : bn, i = 0, s = 0;
    for (; i < n && a[i] == b[i]; i++)
        if (a[i] == '/')
            s = i + 1;
    if (i == an && i == bn)
        return 0;
    const uint8_t *ea = memchr(a + s, '/', an - s), *eb = memchr(b + s, '/', bn - s);
    if (!ea != !eb)
        return ea ? 1 : -1;
    size_t ca = ea ? (size_t)(ea - a) - s : an - s, cb = eb ? (size_t)(eb - b) - s : bn - s;
    int c = memcmp(a + s, b + s, ca < cb ? ca : cb);
    return c ? c : (ca > cb) - (ca < cb);
}

int dt_manifest_index(const uint8_t *buf, size_t len, dt_walk_out *out, dt_err *err)
{
    size_t pos = 0, prev = 0;
    while (pos < len) {
        if (len - pos < DT_MREC)
            return dt_fail(err, DT_E_FORMAT, "manifest cut short", (int64_t)out->count,
                           (int64_t)pos, DT_MREC, (int64_t)(len - pos));
        size_t plen = get16(buf + pos);
        uint8_t kind = buf[pos + 2];
        if (plen == 0 || plen > DT_MAX_PATH || len - pos - DT_MREC < plen)
            return dt_fail(err, DT_E_FORMAT, "manifest path length", (int64_t)out->count,
                           (int64_t)pos, DT_MAX_PATH, (int64_t)plen);
        if (kind < DT_KIND_FILE || kind > DT_KIND_LINK)
            return dt_fail(err, DT_E_FORMAT, "manifest entry kind", (int64_t)out->count,
                           (int64_t)pos, DT_KIND_LINK, kind);
        uint64_t *off = dt_grow(out->offsets, &out->offsets_cap, out->count + 1, sizeof(uint64_t), 1024);
        if (!off)
            return dt_fail(err, DT_E_NOMEM, "manifest index", -1, -1, -1, -1);
        out->offsets = off;
        if (out->count && walk_order(buf + prev + DT_MREC, get16(buf + prev),
                                     buf + pos + DT_MREC, plen) >= 0)
            return dt_fail(err, DT_E_FORMAT, "manifest out of walk order", (int64_t)out->count,
                           (int64_t)pos, -1, -1);
        off[out->count++] = pos;
        prev = pos;
        pos += DT_MREC + plen;
    }
    return DT_OK;
}

static inline uint64_t path_hash(const uint8_t *rec)
{
    return dt_xxh3_64(rec + DT_MREC, get16(rec));
}

int dt_manifest_compare(const uint8_t *ours, const uint64_t *ours_off, size_t ours_n,
                        const uint8_t *theirs, const uint64_t *theirs_off, size_t theirs_n,
                        uint16_t *flags, int64_t *match, dt_err *err)
{
    size_t cap = 16;
    while (cap < 2 * theirs_n)
        cap *= 2;
    /* open addressing: slot holds their index + 1, and the hash beside it */
    uint64_t *slot = calloc(cap, sizeof(uint64_t));
    uint64_t *hashes = malloc(cap * sizeof(uint64_t));
    if (!slot || !hashes) {
        free(slot);
        free(hashes);
        return dt_fail(err, DT_E_NOMEM, "manifest table", -1, -1, -1, -1);
    }
    for (size_t j = 0; j < theirs_n; j++) {
        uint64_t h = path_hash(theirs + theirs_off[j]);
        size_t at = h & (cap - 1);
        while (slot[at])
            at = (at + 1) & (cap - 1);
        slot[at] = j + 1;
        hashes[at] = h;
    }
    for (size_t i = 0; i < ours_n; i++) {
        const uint8_t *a = ours + ours_off[i];
        size_t alen = get16(a);
        uint64_t h = path_hash(a);
        size_t at = h & (cap - 1);
        int64_t found = -1;
        while (slot[at]) {
            const uint8_t *b = theirs + theirs_off[slot[at] - 1];
            if (hashes[at] == h && get16(b) == alen && memcmp(a + DT_MREC, b + DT_MREC, alen) == 0) {
                found = (int64_t)slot[at] - 1;
                break;
            }
            at = (at + 1) & (cap - 1);
        }
        match[i] = found;
        if (found < 0) {
            flags[i] = 0;
            continue;
        }
        const uint8_t *b = theirs + theirs_off[found];
        uint16_t f = DT_CMP_THERE;
        if (a[2] == b[2])
            f |= DT_CMP_KIND;
        if (get64(a + 8) == get64(b + 8))
            f |= DT_CMP_SIZE;
        if (get64(a + 16) == get64(b + 16))
            f |= DT_CMP_MTIME;
        if ((int64_t)get64(b + 16) >= (int64_t)get64(a + 16))
            f |= DT_CMP_NEWER;
        if (get32(a + 4) == get32(b + 4))
            f |= DT_CMP_MODE;
        if (get32(a + 32) == get32(b + 32) && get32(a + 36) == get32(b + 36))
            f |= DT_CMP_OWNER;
        if (a[3] && b[3]) {
            f |= DT_CMP_HASHED;
            if (get64(a + 40) == get64(b + 40))
                f |= DT_CMP_HASH;
        }
        flags[i] = f;
    }
    free(slot);
    free(hashes);
    return DT_OK;
}

void dt_manifest_columns(const uint8_t *buf, const uint64_t *off, size_t n, uint8_t *kind,
                         int64_t *size)
{
    for (size_t i = 0; i < n; i++) {
        kind[i] = buf[off[i] + 2];
        size[i] = (int64_t)get64(buf + off[i] + 8);
    }
}
