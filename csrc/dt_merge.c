#include "dt_merge.h"

#include <stdlib.h>
#include <string.h>

/* A piece of a file's pending content: bytes [off, off+len) come from src. */
typedef struct {
    uint64_t off;
    const uint8_t *src;
    uint32_t len;
} piece;

/* A file's pending writes.  While every write starts at or after the end of
 * the previous one, `p` stays sorted and disjoint and is emitted as it is.
 * After the first write out of order, `p` becomes a log in arrival order and
 * is resolved once, at flush time, which keeps each write O(1). */
typedef struct {
    uint64_t file_id, seq;
    const uint8_t *path;
    uint16_t path_len;
    uint8_t active, in_order;
    uint64_t lo, hi, bytes; /* extent and bytes of all pending writes */
    piece *p;
    size_t n, cap;
} group;

typedef struct {
    group *g;
    size_t ngroups, gcap;
    /* file_id -> group: open addressing; a slot is live when its stamp equals
     * `stamp`, so emptying the map after a namespace op costs nothing. */
    uint64_t *key;
    uint32_t *val, *slot_stamp;
    size_t mask;
    uint32_t stamp;
    size_t *active; /* groups with pending writes, in order of first write */
    size_t nactive;
    uint8_t *out, *end;
    uint32_t max_chunk, out_count;
    /* scratch for resolving an out-of-order log: an image of the extent with
     * a coverage bitmap, or a sorted piece list when the extent is sparse */
    uint8_t *image;
    uint64_t *bits;
    size_t image_cap;
    group sorted;
} merger;

static inline size_t hash_id(uint64_t id, size_t mask)
{
    return (size_t)((id * 0x9E3779B97F4A7C15ULL) >> 29) & mask;
}

static int m_init(merger *m, uint32_t writes)
{
    memset(m, 0, sizeof(*m));
    size_t cap = 64;
    while (cap < (size_t)writes * 2)
        cap <<= 1;
    m->mask = cap - 1;
    m->key = malloc(cap * sizeof(uint64_t));
    m->val = malloc(cap * sizeof(uint32_t));
    m->slot_stamp = calloc(cap, sizeof(uint32_t));
    m->active = malloc(((size_t)writes + 1) * sizeof(size_t));
    m->stamp = 1;
    return m->key && m->val && m->slot_stamp && m->active ? DT_OK : DT_E_NOMEM;
}

static void m_free(merger *m)
{
    for (size_t i = 0; i < m->ngroups; i++)
        free(m->g[i].p);
    free(m->g);
    free(m->key);
    free(m->val);
    free(m->slot_stamp);
    free(m->active);
    free(m->image);
    free(m->bits);
    free(m->sorted.p);
}

/* Group for file_id, creating it (inactive) if absent; NULL on no memory. */
static group *m_group(merger *m, uint64_t file_id)
{
    size_t h = hash_id(file_id, m->mask);
    while (m->slot_stamp[h] == m->stamp) {
        if (m->key[h] == file_id)
            return &m->g[m->val[h]];
        h = (h + 1) & m->mask;
    }
    group *grown = dt_grow(m->g, &m->gcap, m->ngroups + 1, sizeof(group), 16);
    if (!grown)
        return NULL;
    m->g = grown;
    group *g = &m->g[m->ngroups];
    memset(g, 0, sizeof(*g));
    g->file_id = file_id;
    m->slot_stamp[h] = m->stamp;
    m->key[h] = file_id;
    m->val[h] = (uint32_t)m->ngroups++;
    return g;
}

static group *m_find(merger *m, uint64_t file_id)
{
    for (size_t h = hash_id(file_id, m->mask); m->slot_stamp[h] == m->stamp; h = (h + 1) & m->mask)
        if (m->key[h] == file_id)
            return &m->g[m->val[h]];
    return NULL;
}

/* Start a write record of len bytes at off; returns where its data goes. */
static uint8_t *emit_header(merger *m, const group *g, uint64_t off, size_t len)
{
    uint8_t *rec = m->out;
    m->out += dt_op_write(rec, DT_OP_WRITE, g->file_id, g->seq, off, g->path, g->path_len, NULL,
                          (uint32_t)len);
    m->out_count++;
    return rec + DT_REC_HEADER + g->path_len;
}

/* Emit sorted, disjoint pieces: each run of touching pieces becomes records
 * of at most max_chunk bytes, gathered straight from the input. */
static void emit_sorted(merger *m, const group *g, const piece *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j + 1 < n && p[j + 1].off == p[j].off + p[j].len)
            j++;
        uint64_t run_end = p[j].off + p[j].len;
        uint64_t off = p[i].off;
        size_t k = i;
        while (off < run_end) {
            size_t len = run_end - off < m->max_chunk ? (size_t)(run_end - off) : m->max_chunk;
            uint64_t end = off + len;
            uint8_t *dst = emit_header(m, g, off, len);
            for (;;) {
                uint64_t s = p[k].off > off ? p[k].off : off;
                uint64_t e = p[k].off + p[k].len < end ? p[k].off + p[k].len : end;
                memcpy(dst + (s - off), p[k].src + (s - p[k].off), (size_t)(e - s));
                if (p[k].off + p[k].len > end)
                    break;
                if (++k > j || p[k].off >= end)
                    break;
            }
            off = end;
        }
        i = j + 1;
    }
}

static void set_bits(uint64_t *bits, size_t from, size_t len)
{
    size_t to = from + len;
    size_t w = from >> 6, wl = (to - 1) >> 6;
    uint64_t first = ~0ULL << (from & 63), last = ~0ULL >> (63 - ((to - 1) & 63));
    if (w == wl) {
        bits[w] |= first & last;
        return;
    }
    bits[w++] |= first;
    while (w < wl)
        bits[w++] = ~0ULL;
    bits[wl] |= last;
}

/* Next bit at or after i equal to `want`, or limit. */
static size_t next_bit(const uint64_t *bits, size_t i, size_t limit, int want)
{
    while (i < limit) {
        uint64_t word = want ? bits[i >> 6] : ~bits[i >> 6];
        word &= ~0ULL << (i & 63);
        if (word) {
            size_t hit = (i & ~(size_t)63) + (size_t)__builtin_ctzll(word);
            return hit < limit ? hit : limit;
        }
        i = (i | 63) + 1;
    }
    return limit;
}

/* Resolve an out-of-order log whose extent is dense: paint the writes, oldest
 * first, into an image of the extent and emit the covered runs from it. */
static int emit_dense(merger *m, const group *g)
{
    size_t ext = (size_t)(g->hi - g->lo), words = (ext + 63) / 64;
    if (ext > m->image_cap) {
        uint8_t *image = realloc(m->image, ext);
        if (image)
            m->image = image;
        uint64_t *bits = realloc(m->bits, words * sizeof(uint64_t));
        if (bits)
            m->bits = bits;
        if (!image || !bits)
            return DT_E_NOMEM;
        m->image_cap = ext;
    }
    memset(m->bits, 0, words * sizeof(uint64_t));
    for (size_t i = 0; i < g->n; i++) {
        size_t at = (size_t)(g->p[i].off - g->lo);
        memcpy(m->image + at, g->p[i].src, g->p[i].len);
        set_bits(m->bits, at, g->p[i].len);
    }
    size_t at = 0;
    while ((at = next_bit(m->bits, at, ext, 1)) < ext) {
        size_t run_end = next_bit(m->bits, at, ext, 0);
        while (at < run_end) {
            size_t len = run_end - at < m->max_chunk ? run_end - at : m->max_chunk;
            memcpy(emit_header(m, g, g->lo + at, len), m->image + at, len);
            at += len;
        }
    }
    return DT_OK;
}

static int grow(group *g, size_t need)
{
    piece *p = dt_grow(g->p, &g->cap, g->n + need, sizeof(piece), 8);
    if (!p)
        return DT_E_NOMEM;
    g->p = p;
    return DT_OK;
}

/* First piece whose end is beyond off. */
static size_t first_ending_after(const group *g, uint64_t off)
{
    size_t lo = 0, hi = g->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (g->p[mid].off + g->p[mid].len > off)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* Lay a write over a sorted, disjoint piece list, cutting what it covers. */
static int insert_piece(group *g, piece fresh)
{
    if (grow(g, 3) != DT_OK)
        return DT_E_NOMEM;
    uint64_t off = fresh.off, end = off + fresh.len;
    size_t lo = first_ending_after(g, off), hi = lo;
    while (hi < g->n && g->p[hi].off < end)
        hi++;
    piece repl[3];
    size_t nr = 0;
    if (lo < hi && g->p[lo].off < off) {
        piece left = g->p[lo];
        left.len = (uint32_t)(off - left.off);
        repl[nr++] = left;
    }
    repl[nr++] = fresh;
    if (lo < hi) {
        piece right = g->p[hi - 1];
        uint64_t rend = right.off + right.len;
        if (rend > end) {
            right.src += end - right.off;
            right.len = (uint32_t)(rend - end);
            right.off = end;
            repl[nr++] = right;
        }
    }
    memmove(&g->p[lo + nr], &g->p[hi], (g->n - hi) * sizeof(piece));
    memcpy(&g->p[lo], repl, nr * sizeof(piece));
    g->n = g->n - (hi - lo) + nr;
    return DT_OK;
}

/* An image costs O(extent); below this density a sorted list is cheaper. */
#define DENSE_MAX_EXTENT(bytes) (2 * (bytes) + 65536)
#define DENSE_HARD_MAX ((uint64_t)256 << 20)

static int flush_group(merger *m, group *g)
{
    int rc = DT_OK;
    uint64_t ext = g->hi - g->lo;
    if (g->in_order) {
        emit_sorted(m, g, g->p, g->n);
    } else if (ext <= DENSE_MAX_EXTENT(g->bytes) && ext <= DENSE_HARD_MAX) {
        rc = emit_dense(m, g);
    } else {
        m->sorted.n = 0;
        for (size_t i = 0; i < g->n && rc == DT_OK; i++)
            rc = insert_piece(&m->sorted, g->p[i]);
        if (rc == DT_OK)
            emit_sorted(m, g, m->sorted.p, m->sorted.n);
    }
    g->n = 0;
    g->active = 0;
    return rc;
}

static int add_write(group *g, uint64_t off, const uint8_t *src, uint32_t len)
{
    if (grow(g, 1) != DT_OK)
        return DT_E_NOMEM;
    uint64_t end = off + len;
    if (g->n == 0) {
        g->lo = off;
        g->hi = end;
        g->bytes = 0;
        g->in_order = 1;
    } else {
        if (off < g->hi)
            g->in_order = 0;
        if (off < g->lo)
            g->lo = off;
        if (end > g->hi)
            g->hi = end;
    }
    g->bytes += len;
    g->p[g->n++] = (piece){off, src, len};
    return DT_OK;
}

/* A truncate to `size` follows every pending write of g: bytes at or past
 * `size` are cut by it, so they are not sent.  Cutting pieces keeps a sorted
 * list sorted and disjoint. */
static void trim_group(group *g, uint64_t size)
{
    size_t k = 0;
    uint64_t lo = UINT64_MAX, hi = 0, bytes = 0;
    for (size_t i = 0; i < g->n; i++) {
        piece p = g->p[i];
        if (p.off >= size)
            continue;
        if (p.off + p.len > size)
            p.len = (uint32_t)(size - p.off);
        g->p[k++] = p;
        lo = p.off < lo ? p.off : lo;
        hi = p.off + p.len > hi ? p.off + p.len : hi;
        bytes += p.len;
    }
    g->n = k;
    g->lo = k ? lo : 0;
    g->hi = k ? hi : 0;
    g->bytes = bytes;
    if (!k)
        g->in_order = 1;
}

static int flush_all(merger *m)
{
    int rc = DT_OK;
    for (size_t i = 0; i < m->nactive; i++)
        if (flush_group(m, &m->g[m->active[i]]) != DT_OK)
            rc = DT_E_NOMEM;
    m->nactive = 0;
    for (size_t i = 0; i < m->ngroups; i++)
        free(m->g[i].p);
    m->ngroups = 0;
    m->stamp++;
    return rc;
}

static void unlist(merger *m, group *g)
{
    size_t gi = (size_t)(g - m->g);
    for (size_t i = 0; i < m->nactive; i++) {
        if (m->active[i] == gi) {
            memmove(&m->active[i], &m->active[i + 1], (m->nactive - i - 1) * sizeof(size_t));
            m->nactive--;
            break;
        }
    }
}

static int flush_one(merger *m, group *g)
{
    unlist(m, g);
    return flush_group(m, g);
}

size_t dt_merge_bound(size_t in_len, const dt_batch_info *info, uint32_t max_chunk)
{
    size_t chunks = (size_t)info->writes + (size_t)(info->data_bytes / (max_chunk ? max_chunk : 1)) + 1;
    return in_len + chunks * (DT_REC_HEADER + (size_t)info->max_path + 8);
}

int dt_merge(const uint8_t *in, size_t in_len, const dt_batch_info *info, uint32_t max_chunk,
             uint8_t *out, size_t out_cap, size_t *out_len, dt_err *err)
{
    if (max_chunk < DT_CHUNK_MIN || max_chunk > DT_CHUNK_MAX)
        return dt_fail(err, DT_E_ARG, "MaxWriteChunkSize out of range", -1, -1, DT_CHUNK_MAX, max_chunk);
    if (out_cap < dt_merge_bound(in_len, info, max_chunk))
        return dt_fail(err, DT_E_SPACE, "output buffer too small", -1, -1,
                       (int64_t)dt_merge_bound(in_len, info, max_chunk), (int64_t)out_cap);
    merger m;
    if (m_init(&m, info->writes) != DT_OK) {
        m_free(&m);
        return dt_fail(err, DT_E_NOMEM, "cannot allocate merge tables", -1, -1, info->writes, 0);
    }
    m.max_chunk = max_chunk;
    m.out = out + DT_BATCH_HEADER;
    m.end = out + out_cap;
    size_t pos = DT_BATCH_HEADER;
    /* the file the last namespace op created, if it was a create */
    int fresh = 0;
    uint64_t fresh_id = 0;
    const uint8_t *fresh_path = NULL;
    uint16_t fresh_len = 0;
    for (uint32_t i = 0; i < info->count; i++) {
        dt_op_view op;
        dt_op_read(in + pos, &op);
        if (op.kind == DT_OP_WRITE) {
            if (op.data_len > 0) {
                group *g = m_group(&m, op.file_id);
                if (!g)
                    goto nomem;
                if (g->active && (g->path_len != op.path_len || memcmp(g->path, op.path, op.path_len)) &&
                    flush_one(&m, g) != DT_OK)
                    goto nomem;
                if (!g->active) {
                    g->active = 1;
                    g->path = op.path;
                    g->path_len = op.path_len;
                    g->seq = op.seq;
                    m.active[m.nactive++] = (size_t)(g - m.g);
                }
                if (op.seq > g->seq)
                    g->seq = op.seq;
                if (add_write(g, op.arg, op.data, op.data_len) != DT_OK)
                    goto nomem;
            }
        } else {
            if (op.kind == DT_OP_TRUNCATE || op.kind == DT_OP_SETATTR || op.kind == DT_OP_XATTR) {
                group *g = m_find(&m, op.file_id);
                if (g && g->active && op.kind == DT_OP_TRUNCATE)
                    trim_group(g, op.arg);
                if (g && g->active && flush_one(&m, g) != DT_OK)
                    goto nomem;
            } else {
                if (op.kind == DT_OP_DELETE && fresh && op.path_len == fresh_len &&
                    !memcmp(op.path, fresh_path, fresh_len)) {
                    /* the file was made since the last namespace op, so no
                     * other name shares it: its pending writes are moot */
                    group *g = m_find(&m, fresh_id);
                    if (g && g->active && g->path_len == op.path_len &&
                        !memcmp(g->path, op.path, op.path_len)) {
                        unlist(&m, g);
                        g->n = 0;
                        g->active = 0;
                    }
                }
                if (flush_all(&m) != DT_OK)
                    goto nomem;
                fresh = op.kind == DT_OP_CREATE;
                fresh_id = op.file_id;
                fresh_path = op.path;
                fresh_len = op.path_len;
            }
            memcpy(m.out, in + pos, op.rec_len);
            m.out += op.rec_len;
            m.out_count++;
        }
        pos += op.rec_len;
    }
    if (flush_all(&m) != DT_OK)
        goto nomem;
    *out_len = (size_t)(m.out - out);
    dt_batch_header(out, m.out_count, (uint32_t)(*out_len - DT_BATCH_HEADER));
    m_free(&m);
    return DT_OK;
nomem:
    m_free(&m);
    return dt_fail(err, DT_E_NOMEM, "cannot allocate merge pieces", -1, -1, 0, 0);
}
