#include "dt_crc32c.h"

#include <string.h>

#define POLY 0x82F63B78u /* 0x1EDC6F41 reflected */

static uint32_t table[8][256];
static int table_ready;

static void build_table(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xFF];
    __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

static uint32_t crc_table(uint32_t crc, const uint8_t *p, size_t n)
{
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE))
        build_table(); /* idempotent: racing threads write the same values */
    while (n && ((uintptr_t)p & 7)) {
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
        n--;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        w ^= crc;
        crc = table[7][w & 0xFF] ^ table[6][(w >> 8) & 0xFF] ^ table[5][(w >> 16) & 0xFF] ^
              table[4][(w >> 24) & 0xFF] ^ table[3][(w >> 32) & 0xFF] ^ table[2][(w >> 40) & 0xFF] ^
              table[1][(w >> 48) & 0xFF] ^ table[0][w >> 56];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xFF];
    return crc;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* The crc32 instruction takes 3 cycles but can start one per cycle, so long
 * buffers run as three interleaved lanes of LANE bytes.  A lane's CRC is
 * folded into the next by "shifting" it over LANE zero bytes, a linear map
 * on the 32-bit state precomputed as four byte tables. */
#define LANE 4096
static uint32_t shift_table[4][256];
static int shift_ready;

static uint32_t raw_zeros(uint32_t c, size_t n) /* raw state after n zero bytes */
{
    while (n--)
        c = (c >> 8) ^ table[0][c & 0xFF];
    return c;
}

static void build_shift(void)
{
    if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE))
        build_table();
    uint32_t basis[32];
    for (int b = 0; b < 32; b++)
        basis[b] = raw_zeros(1u << b, LANE);
    for (int k = 0; k < 4; k++)
        for (uint32_t v = 0; v < 256; v++) {
            uint32_t x = 0;
            for (int b = 0; b < 8; b++)
                if (v >> b & 1)
                    x ^= basis[8 * k + b];
            shift_table[k][v] = x;
        }
    __atomic_store_n(&shift_ready, 1, __ATOMIC_RELEASE);
}

static inline uint32_t shift_lane(uint32_t c)
{
    return shift_table[0][c & 0xFF] ^ shift_table[1][(c >> 8) & 0xFF] ^
           shift_table[2][(c >> 16) & 0xFF] ^ shift_table[3][c >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_sse42(uint32_t crc, const uint8_t *p, size_t n)
{
    uint64_t c = crc;
    while (n && ((uintptr_t)p & 7)) {
        c = _mm_crc32_u8((uint32_t)c, *p++);
        n--;
    }
    if (n >= 3 * LANE && !__atomic_load_n(&shift_ready, __ATOMIC_ACQUIRE))
        build_shift(); /* idempotent, like build_table */
    while (n >= 3 * LANE) {
        uint64_t c1 = 0, c2 = 0;
        for (size_t i = 0; i < LANE; i += 8) {
            uint64_t a, b, d;
            memcpy(&a, p + i, 8);
            memcpy(&b, p + LANE + i, 8);
            memcpy(&d, p + 2 * LANE + i, 8);
            c = _mm_crc32_u64(c, a);
            c1 = _mm_crc32_u64(c1, b);
            c2 = _mm_crc32_u64(c2, d);
        }
        c = shift_lane(shift_lane((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
        p += 3 * LANE;
        n -= 3 * LANE;
    }
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        n -= 8;
    }
    while (n--)
        c = _mm_crc32_u8((uint32_t)c, *p++);
    return (uint32_t)c;
}

/* Carry-less multiplication folds 64 bytes per 512-bit register and lane
 * (AVX-512 VPCLMULQDQ), several times the crc32 instruction's 8 bytes per
 * cycle.  With a reflected 128-bit chunk a = hi * x^64 + lo, moving it D bits
 * further down the message is a = hi * (x^(D+64) mod P) + lo * (x^D mod P);
 * clmul on reflected operands yields the product times x, hence the
 * constants x^(D+63) and x^(D-1).  The final 16 bytes go through crc32. */
static uint64_t xpow_reflected(unsigned n) /* (x^n mod P), as clmul's 64-bit operand */
{
    uint32_t r = 0x80000000u; /* x^0 */
    while (n--)
        r = (r >> 1) ^ (r & 1 ? POLY : 0);
    return (uint64_t)r << 32;
}

/* distances of 2048, 512, 384, 256 and 128 bits */
enum { K256B, K64B, K48B, K32B, K16B };
static uint64_t fold_k[5][2];
static int fold_ready;

static void build_fold(void)
{
    static const unsigned dist[5] = {2048, 512, 384, 256, 128};
    for (int i = 0; i < 5; i++) {
        fold_k[i][0] = xpow_reflected(dist[i] + 63);
        fold_k[i][1] = xpow_reflected(dist[i] - 1);
    }
    __atomic_store_n(&fold_ready, 1, __ATOMIC_RELEASE);
}

#define VPCLMUL_TARGET __attribute__((target("avx512f,vpclmulqdq,pclmul,sse4.2")))

VPCLMUL_TARGET static inline __m512i fold512(__m512i a, __m512i k, __m512i data)
{
    return _mm512_ternarylogic_epi64(_mm512_clmulepi64_epi128(a, k, 0x00),
                                     _mm512_clmulepi64_epi128(a, k, 0x11), data, 0x96);
}

VPCLMUL_TARGET static inline __m128i fold128(__m128i a, const uint64_t k[2])
{
    __m128i kk = _mm_set_epi64x((long long)k[1], (long long)k[0]);
    return _mm_xor_si128(_mm_clmulepi64_si128(a, kk, 0x00), _mm_clmulepi64_si128(a, kk, 0x11));
}

VPCLMUL_TARGET static uint32_t crc_vpclmul(uint32_t crc, const uint8_t *p, size_t n)
{
    if (n < 256)
        return crc_sse42(crc, p, n);
    if (!__atomic_load_n(&fold_ready, __ATOMIC_ACQUIRE))
        build_fold(); /* idempotent, like build_table */
    __m512i k256 = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)fold_k[K256B][1], (long long)fold_k[K256B][0]));
    __m512i k64 = _mm512_broadcast_i32x4(_mm_set_epi64x((long long)fold_k[K64B][1], (long long)fold_k[K64B][0]));
    /* the running CRC enters as the message's first 32 bits */
    __m512i a0 = _mm512_xor_si512(_mm512_loadu_si512(p),
                                  _mm512_mask_set1_epi32(_mm512_setzero_si512(), 1, (int)crc));
    __m512i a1 = _mm512_loadu_si512(p + 64), a2 = _mm512_loadu_si512(p + 128),
            a3 = _mm512_loadu_si512(p + 192);
    p += 256;
    n -= 256;
    for (; n >= 256; p += 256, n -= 256) {
        a0 = fold512(a0, k256, _mm512_loadu_si512(p));
        a1 = fold512(a1, k256, _mm512_loadu_si512(p + 64));
        a2 = fold512(a2, k256, _mm512_loadu_si512(p + 128));
        a3 = fold512(a3, k256, _mm512_loadu_si512(p + 192));
    }
    a1 = fold512(a0, k64, a1);
    a2 = fold512(a1, k64, a2);
    a3 = fold512(a2, k64, a3);
    for (; n >= 64; p += 64, n -= 64)
        a3 = fold512(a3, k64, _mm512_loadu_si512(p));
    __m128i x = _mm_xor_si128(_mm512_extracti32x4_epi32(a3, 3),
                              fold128(_mm512_extracti32x4_epi32(a3, 0), fold_k[K48B]));
    x = _mm_xor_si128(x, fold128(_mm512_extracti32x4_epi32(a3, 1), fold_k[K32B]));
    x = _mm_xor_si128(x, fold128(_mm512_extracti32x4_epi32(a3, 2), fold_k[K16B]));
    for (; n >= 16; p += 16, n -= 16)
        x = _mm_xor_si128(fold128(x, fold_k[K16B]), _mm_loadu_si128((const __m128i *)p));
    uint64_t c = _mm_crc32_u64(0, (uint64_t)_mm_cvtsi128_si64(x));
    c = _mm_crc32_u64(c, (uint64_t)_mm_extract_epi64(x, 1));
    return crc_sse42((uint32_t)c, p, n);
}
#endif

static int impl = -1;

int dt_crc32c_select(int want)
{
#if defined(__x86_64__)
    /* __builtin_cpu_supports returns a feature bit, not 1 */
    int best = !__builtin_cpu_supports("sse4.2") ? 0
               : __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("vpclmulqdq") &&
                       __builtin_cpu_supports("pclmul")
                   ? 2
                   : 1;
#else
    int best = 0;
#endif
    impl = want < 0 || want > best ? best : want;
    return impl;
}

uint32_t dt_crc32c(uint32_t crc, const void *data, size_t length)
{
    if (impl < 0)
        dt_crc32c_select(-1);
    crc = ~crc;
#if defined(__x86_64__)
    if (impl == 2)
        return ~crc_vpclmul(crc, data, length);
    if (impl == 1)
        return ~crc_sse42(crc, data, length);
#endif
    return ~crc_table(crc, data, length);
}
