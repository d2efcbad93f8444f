#include "dt_merge.h"

#include <stdlib.h>
#include <string.h>

/* A piece of a file's pending content: bytes [off, off+len) come from src. */
typedef struct {
    uint64_t off;
    const uint8_t *src;
    uint32_t len;
} piece;

typedef struct {
    uint64_t file_id, seq;
    const uint8_t *path;
    uint16_t path_len;
    int active;
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
    if (m->ngroups == m->gcap) {
        size_t cap = m->gcap ? m->gcap * 2 : 16;
        group *g = realloc(m->g, cap * sizeof(group));
        if (!g)
            return NULL;
        m->g = g;
        m->gcap = cap;
    }
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

static void emit_write(merger *m, group *g, uint64_t off, size_t len, size_t first, size_t last)
{
    /* One record whose data is gathered from pieces [first, last]. */
    uint8_t *rec = m->out;
    size_t size = dt_op_write(rec, DT_OP_WRITE, g->file_id, g->seq, off, g->path, g->path_len, NULL,
                              (uint32_t)len);
    uint8_t *dst = rec + DT_REC_HEADER + g->path_len;
    uint64_t end = off + len;
    for (size_t i = first; i <= last; i++) {
        const piece *p = &g->p[i];
        uint64_t s = p->off > off ? p->off : off;
        uint64_t e = p->off + p->len < end ? p->off + p->len : end;
        memcpy(dst + (s - off), p->src + (s - p->off), (size_t)(e - s));
    }
    m->out += size;
    m->out_count++;
}

static void flush_group(merger *m, group *g)
{
    size_t i = 0;
    while (i < g->n) {
        /* a run: pieces that touch end to start */
        size_t j = i;
        while (j + 1 < g->n && g->p[j + 1].off == g->p[j].off + g->p[j].len)
            j++;
        uint64_t run_end = g->p[j].off + g->p[j].len;
        uint64_t off = g->p[i].off;
        size_t k = i;
        while (off < run_end) {
            size_t len = run_end - off < m->max_chunk ? (size_t)(run_end - off) : m->max_chunk;
            size_t last = k;
            while (g->p[last].off + g->p[last].len < off + len)
                last++;
            emit_write(m, g, off, len, k, last);
            off += len;
            k = last;
            if (g->p[k].off + g->p[k].len <= off)
                k++;
        }
        i = j + 1;
    }
    g->n = 0;
    g->active = 0;
}

static void flush_all(merger *m)
{
    for (size_t i = 0; i < m->nactive; i++)
        flush_group(m, &m->g[m->active[i]]);
    m->nactive = 0;
    for (size_t i = 0; i < m->ngroups; i++)
        free(m->g[i].p);
    m->ngroups = 0;
    m->stamp++;
}

static void flush_one(merger *m, group *g)
{
    size_t gi = (size_t)(g - m->g);
    flush_group(m, g);
    for (size_t i = 0; i < m->nactive; i++) {
        if (m->active[i] == gi) {
            memmove(&m->active[i], &m->active[i + 1], (m->nactive - i - 1) * sizeof(size_t));
            m->nactive--;
            break;
        }
    }
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

static int add_write(group *g, uint64_t off, const uint8_t *src, uint32_t len)
{
    if (g->n + 3 > g->cap) {
        size_t cap = g->cap ? g->cap * 2 : 8;
        piece *p = realloc(g->p, cap * sizeof(piece));
        if (!p)
            return DT_E_NOMEM;
        g->p = p;
        g->cap = cap;
    }
    uint64_t end = off + len;
    piece fresh = {off, src, len};
    if (g->n == 0 || g->p[g->n - 1].off + g->p[g->n - 1].len <= off) {
        g->p[g->n++] = fresh; /* the common case: appending */
        return DT_OK;
    }
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
    size_t removed = hi - lo;
    memmove(&g->p[lo + nr], &g->p[hi], (g->n - hi) * sizeof(piece));
    memcpy(&g->p[lo], repl, nr * sizeof(piece));
    g->n = g->n - removed + nr;
    return DT_OK;
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
    for (uint32_t i = 0; i < info->count; i++) {
        dt_op_view op;
        dt_op_read(in + pos, &op);
        if (op.kind == DT_OP_WRITE) {
            if (op.data_len > 0) {
                group *g = m_group(&m, op.file_id);
                if (!g)
                    goto nomem;
                if (g->active && (g->path_len != op.path_len || memcmp(g->path, op.path, op.path_len))) {
                    flush_one(&m, g);
                }
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
            if (op.kind == DT_OP_TRUNCATE || op.kind == DT_OP_SETATTR) {
                group *g = m_find(&m, op.file_id);
                if (g && g->active)
                    flush_one(&m, g);
            } else {
                flush_all(&m);
            }
            memcpy(m.out, in + pos, op.rec_len);
            m.out += op.rec_len;
            m.out_count++;
        }
        pos += op.rec_len;
    }
    flush_all(&m);
    *out_len = (size_t)(m.out - out);
    dt_batch_header(out, m.out_count, (uint32_t)(*out_len - DT_BATCH_HEADER));
    m_free(&m);
    return DT_OK;
nomem:
    m_free(&m);
    return dt_fail(err, DT_E_NOMEM, "cannot allocate merge pieces", -1, -1, 0, 0);
}
