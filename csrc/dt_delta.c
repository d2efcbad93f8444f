#include "dt_delta.h"

#include <stdlib.h>
#include <string.h>

#include "dt_checksum.h"
#include "dt_xxh3.h"

#define NO_BLOCK UINT32_MAX

/* a = sum p[i], b = sum (len - i) * p[i], both mod 2^32, from byte `from` on
 * (the first `from` bytes already summed into a and b). */
static uint64_t weak_tail(const uint8_t *p, size_t len, size_t from, uint32_t a, uint32_t b)
{
    for (size_t i = from; i < len; i++) {
        a += p[i];
        b += (uint32_t)(len - i) * p[i];
    }
    return ((uint64_t)b << 32) | a;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* The same sums 32 bytes at a time.  Chunk c (at 32c) adds its byte sum S_c
 * to a and (len - 32c) * S_c - W_c to b, where W_c = sum k * p[32c + k];
 * sum over c of c * S_c comes from P = sum over c of the sums of the chunks
 * before c, as (n - 1) * S - P.  All in wrapping 32-bit arithmetic, as the
 * plain loop, so both give the same bits; the portable build (no -march)
 * still gets it on CPUs that have AVX2. */
__attribute__((target("avx2"))) static uint64_t weak_avx2(const uint8_t *p, size_t len)
{
    const __m256i ramp = _mm256_setr_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
                                          16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29,
                                          30, 31);
    const __m256i ones = _mm256_set1_epi16(1), zero = _mm256_setzero_si256();
    __m256i vs = zero, vp = zero, vw = zero;
    size_t n = len / 32;
    for (size_t c = 0; c < n; c++) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(p + 32 * c));
        vp = _mm256_add_epi64(vp, vs);
        vs = _mm256_add_epi64(vs, _mm256_sad_epu8(x, zero));
        vw = _mm256_add_epi32(vw, _mm256_madd_epi16(_mm256_maddubs_epi16(x, ramp), ones));
    }
    uint64_t s4[4], p4[4];
    uint32_t w8[8];
    _mm256_storeu_si256((__m256i *)s4, vs);
    _mm256_storeu_si256((__m256i *)p4, vp);
    _mm256_storeu_si256((__m256i *)w8, vw);
    uint32_t S = (uint32_t)(s4[0] + s4[1] + s4[2] + s4[3]);
    uint32_t P = (uint32_t)(p4[0] + p4[1] + p4[2] + p4[3]);
    uint32_t W = 0;
    for (int i = 0; i < 8; i++)
        W += w8[i];
    uint32_t cs = (uint32_t)(n - 1) * S - P; /* sum of c * S_c */
    uint32_t b = (uint32_t)len * S - 32u * cs - W;
    return weak_tail(p, len, 32 * n, S, b);
}
#endif

uint64_t dt_weak_block(const uint8_t *p, size_t len)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (len >= 64 && __builtin_cpu_supports("avx2")) /* a read of libgcc's CPU flags */
        return weak_avx2(p, len);
#endif
    return weak_tail(p, len, 0, 0, 0);
}

int dt_signature_buf(const uint8_t *buf, size_t len, size_t block, uint64_t *weak, uint64_t *strong,
                     dt_err *err)
{
    if (block < DT_BLOCK_MIN || block > DT_BLOCK_MAX)
        return dt_fail(err, DT_E_ARG, "block size out of range", -1, -1, DT_BLOCK_MAX, (int64_t)block);
    size_t n = (size_t)dt_block_count(len, block);
    for (size_t i = 0; i < n; i++) {
        size_t off = i * block, l = len - off < block ? len - off : block;
        weak[i] = dt_weak_block(buf + off, l);
        strong[i] = dt_xxh3_64(buf + off, l);
    }
    return DT_OK;
}

/* Open-addressing index of the target's full blocks by weak sum.  Blocks
 * identical in both sums are stored once: any copy of them will do. */
typedef struct {
    uint32_t *slot;
    size_t mask;
} block_index;

static inline size_t slot_of(uint64_t weak, size_t mask)
{
    return (size_t)((weak * 0x9E3779B97F4A7C15ULL) >> 32) & mask;
}

static int index_build(block_index *ix, const uint64_t *weak, const uint64_t *strong, size_t nfull)
{
    size_t cap = 16;
    while (cap < nfull * 2)
        cap <<= 1;
    ix->mask = cap - 1;
    ix->slot = malloc(cap * sizeof(uint32_t));
    if (!ix->slot)
        return DT_E_NOMEM;
    memset(ix->slot, 0xff, cap * sizeof(uint32_t));
    for (size_t j = 0; j < nfull; j++) {
        size_t h = slot_of(weak[j], ix->mask);
        int dup = 0;
        while (ix->slot[h] != NO_BLOCK) {
            uint32_t k = ix->slot[h];
            if (weak[k] == weak[j] && strong[k] == strong[j]) {
                dup = 1;
                break;
            }
            h = (h + 1) & ix->mask;
        }
        if (!dup)
            ix->slot[h] = (uint32_t)j;
    }
    return DT_OK;
}

typedef struct {
    dt_insn *v;
    size_t n, cap;
    uint64_t literal_bytes;
} insn_list;

static int emit(insn_list *l, int64_t target_offset, int64_t length)
{
    if (length == 0)
        return DT_OK;
    if (l->n > 0) {
        dt_insn *last = &l->v[l->n - 1];
        int contiguous = target_offset < 0 ? last->target_offset < 0
                                           : last->target_offset >= 0 &&
                                                 last->target_offset + last->length == target_offset;
        if (contiguous) {
            last->length += length;
            goto counted;
        }
    }
    dt_insn *v = dt_grow(l->v, &l->cap, l->n + 1, sizeof(dt_insn), 64);
    if (!v)
        return DT_E_NOMEM;
    l->v = v;
    l->v[l->n].target_offset = target_offset;
    l->v[l->n].length = length;
    l->n++;
counted:
    if (target_offset < 0)
        l->literal_bytes += (uint64_t)length;
    return DT_OK;
}

int dt_delta_build(const uint64_t *weak, const uint64_t *strong, size_t nblocks, uint64_t target_size,
                   size_t block, const uint8_t *src, size_t src_len, dt_insn **insns, size_t *ninsns,
                   uint64_t *literal_bytes, dt_err *err)
{
    if (block < DT_BLOCK_MIN || block > DT_BLOCK_MAX)
        return dt_fail(err, DT_E_ARG, "block size out of range", -1, -1, DT_BLOCK_MAX, (int64_t)block);
    if (nblocks != dt_block_count(target_size, block))
        return dt_fail(err, DT_E_ARG, "signature block count does not match the target size", -1, -1,
                       (int64_t)dt_block_count(target_size, block), (int64_t)nblocks);
    if (nblocks >= NO_BLOCK)
        return dt_fail(err, DT_E_ARG, "too many blocks in the signature", -1, -1, NO_BLOCK - 1,
                       (int64_t)nblocks);

    size_t nfull = (size_t)(target_size / block);
    size_t tail = (size_t)(target_size % block);
    block_index ix = {0};
    insn_list out = {0};
    int rc = index_build(&ix, weak, strong, nfull);
    if (rc != DT_OK)
        return dt_fail(err, rc, "cannot allocate block index", -1, -1, (int64_t)nfull, 0);

    size_t pos = 0, lit_start = 0;
    size_t next_expected = NO_BLOCK; /* block after the last match: keeps copies contiguous */
    uint32_t a = 0, b = 0;
    int have_weak = 0;
    const uint32_t bl = (uint32_t)block;

    while (nfull > 0 && pos + block <= src_len) {
        if (!have_weak) {
            uint64_t w = dt_weak_block(src + pos, block);
            a = (uint32_t)w;
            b = (uint32_t)(w >> 32);
            have_weak = 1;
        }
        uint64_t key = ((uint64_t)b << 32) | a;
        size_t match = NO_BLOCK;
        int strong_done = 0;
        uint64_t s = 0;
        if (next_expected < nfull && weak[next_expected] == key) {
            s = dt_xxh3_64(src + pos, block);
            strong_done = 1;
            if (strong[next_expected] == s)
                match = next_expected;
        }
        if (match == NO_BLOCK) {
            for (size_t h = slot_of(key, ix.mask); ix.slot[h] != NO_BLOCK; h = (h + 1) & ix.mask) {
                uint32_t j = ix.slot[h];
                if (weak[j] != key)
                    continue;
                if (!strong_done) {
                    s = dt_xxh3_64(src + pos, block);
                    strong_done = 1;
                }
                if (strong[j] == s) {
                    match = j;
                    break;
                }
            }
        }
        if (match != NO_BLOCK) {
            if ((rc = emit(&out, -1, (int64_t)(pos - lit_start))) != DT_OK ||
                (rc = emit(&out, (int64_t)(match * block), (int64_t)block)) != DT_OK)
                goto fail;
            pos += block;
            lit_start = pos;
            next_expected = match + 1;
            have_weak = 0;
            continue;
        }
        if (pos + block < src_len) {
            uint32_t out_byte = src[pos], in_byte = src[pos + block];
            a += in_byte - out_byte;
            b += a - bl * out_byte;
        }
        pos++;
    }
    /* The target's short last block can only match the source's end. */
    if (tail > 0 && src_len - lit_start >= tail) {
        size_t at = src_len - tail;
        if (dt_xxh3_64(src + at, tail) == strong[nblocks - 1]) {
            if ((rc = emit(&out, -1, (int64_t)(at - lit_start))) != DT_OK ||
                (rc = emit(&out, (int64_t)(nfull * block), (int64_t)tail)) != DT_OK)
                goto fail;
            lit_start = src_len;
        }
    }
    if ((rc = emit(&out, -1, (int64_t)(src_len - lit_start))) != DT_OK)
        goto fail;
    free(ix.slot);
    *insns = out.v;
    *ninsns = out.n;
    *literal_bytes = out.literal_bytes;
    return DT_OK;
fail:
    free(ix.slot);
    free(out.v);
    return dt_fail(err, rc, "cannot allocate delta instructions", -1, -1, 0, 0);
}

void dt_delta_gather(const dt_insn *insns, size_t ninsns, const uint8_t *src, uint8_t *out)
{
    size_t spos = 0;
    for (size_t i = 0; i < ninsns; i++) {
        size_t len = (size_t)insns[i].length;
        if (insns[i].target_offset < 0) {
            memcpy(out, src + spos, len);
            out += len;
        }
        spos += len;
    }
}

int dt_delta_check(size_t target_len, const dt_insn *insns, size_t ninsns, size_t literals_len,
                   size_t out_len, dt_err *err)
{
    size_t opos = 0, lpos = 0;
    for (size_t i = 0; i < ninsns; i++) {
        int64_t off = insns[i].target_offset, len = insns[i].length;
        if (len < 0)
            return dt_fail(err, DT_E_RANGE, "negative instruction length", (int64_t)i, -1, 0, len);
        if ((uint64_t)len > out_len - opos)
            return dt_fail(err, DT_E_RANGE, "instruction writes past the end of the rebuilt file",
                           (int64_t)i, (int64_t)opos, (int64_t)(out_len - opos), len);
        if (off >= 0) {
            if ((uint64_t)off > target_len || (uint64_t)len > target_len - (uint64_t)off)
                return dt_fail(err, DT_E_RANGE, "copy reads past the end of the target", (int64_t)i,
                               off, (int64_t)target_len, off + len);
        } else if (off == -1) {
            if ((uint64_t)len > literals_len - lpos)
                return dt_fail(err, DT_E_RANGE, "literal reads past the end of the literals", (int64_t)i,
                               (int64_t)lpos, (int64_t)(literals_len - lpos), len);
            lpos += (size_t)len;
        } else {
            return dt_fail(err, DT_E_RANGE, "unknown instruction kind", (int64_t)i, -1, -1, off);
        }
        opos += (size_t)len;
    }
    if (opos != out_len)
        return dt_fail(err, DT_E_RANGE, "instructions rebuild a file of the wrong size", -1, -1,
                       (int64_t)out_len, (int64_t)opos);
    if (lpos != literals_len)
        return dt_fail(err, DT_E_RANGE, "literals left over after the last instruction", -1, -1,
                       (int64_t)literals_len, (int64_t)lpos);
    return DT_OK;
}

int dt_delta_apply(const uint8_t *target, size_t target_len, const dt_insn *insns, size_t ninsns,
                   const uint8_t *literals, size_t literals_len, uint8_t *out, size_t out_len,
                   dt_err *err)
{
    int rc = dt_delta_check(target_len, insns, ninsns, literals_len, out_len, err);
    if (rc != DT_OK)
        return rc;
    for (size_t i = 0; i < ninsns; i++) {
        size_t len = (size_t)insns[i].length;
        if (insns[i].target_offset >= 0) {
            memcpy(out, target + insns[i].target_offset, len);
        } else {
            memcpy(out, literals, len);
            literals += len;
        }
        out += len;
    }
    return DT_OK;
}
