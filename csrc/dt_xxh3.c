#include "dt_xxh3.h"

#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define DT_HAVE_X86 1
#endif

#define P32_1 0x9E3779B1U
#define P32_2 0x85EBCA77U
#define P32_3 0xC2B2AE3DU
#define P64_1 0x9E3779B185EBCA87ULL
#define P64_2 0xC2B2AE3D27D4EB4FULL
#define P64_3 0x165667B19E3779F9ULL
#define P64_4 0x85EBCA77C2B2AE63ULL
#define P64_5 0x27D4EB2F165667C5ULL
#define PMX_1 0x165667919E3779F9ULL
#define PMX_2 0x9FB21C651E98DF25ULL

#define SECRET_SIZE 192
#define STRIPE 64
#define STRIPES_PER_BLOCK ((SECRET_SIZE - STRIPE) / 8)
#define BLOCK_LEN (STRIPE * STRIPES_PER_BLOCK)

/* The specification's default 192-byte secret. */
static const uint8_t k_secret[SECRET_SIZE] = {
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
    0x71, 0x64, 0x48, 0x97, 0xa2, 0x0d, 0xf9, 0x4e, 0x38, 0x19, 0xef, 0x46, 0xa9, 0xde, 0xac, 0xd8,
    0xa8, 0xfa, 0x76, 0x3f, 0xe3, 0x9c, 0x34, 0x3f, 0xf9, 0xdc, 0xbb, 0xc7, 0xc7, 0x0b, 0x4f, 0x1d,
    0x8a, 0x51, 0xe0, 0x4b, 0xcd, 0xb4, 0x59, 0x31, 0xc8, 0x9f, 0x7e, 0xc9, 0xd9, 0x78, 0x73, 0x64,
    0xea, 0xc5, 0xac, 0x83, 0x34, 0xd3, 0xeb, 0xc3, 0xc5, 0x81, 0xa0, 0xff, 0xfa, 0x13, 0x63, 0xeb,
    0x17, 0x0d, 0xdd, 0x51, 0xb7, 0xf0, 0xda, 0x49, 0xd3, 0x16, 0x55, 0x26, 0x29, 0xd4, 0x68, 0x9e,
    0x2b, 0x16, 0xbe, 0x58, 0x7d, 0x47, 0xa1, 0xfc, 0x8f, 0xf8, 0xb8, 0xd1, 0x7a, 0xd0, 0x31, 0xce,
    0x45, 0xcb, 0x3a, 0x8f, 0x95, 0x16, 0x04, 0x28, 0xaf, 0xd7, 0xfb, 0xca, 0xbb, 0x4b, 0x40, 0x7e,
};

/* Little-endian loads; memcpy compiles to one unaligned load. */
static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}

static inline uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static inline uint64_t mul128_fold64(uint64_t a, uint64_t b)
{
    __uint128_t r = (__uint128_t)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t xxh64_avalanche(uint64_t h)
{
    h ^= h >> 33;
    h *= P64_2;
    h ^= h >> 29;
    h *= P64_3;
    h ^= h >> 32;
    return h;
}

static inline uint64_t xxh3_avalanche(uint64_t h)
{
    h ^= h >> 37;
    h *= PMX_1;
    h ^= h >> 32;
    return h;
}

static inline uint64_t rrmxmx(uint64_t h, uint64_t len)
{
    h ^= rotl64(h, 49) ^ rotl64(h, 24);
    h *= PMX_2;
    h ^= (h >> 35) + len;
    h *= PMX_2;
    h ^= h >> 28;
    return h;
}

static inline uint64_t mix16(const uint8_t *in, const uint8_t *sec)
{
    return mul128_fold64(rd64(in) ^ rd64(sec), rd64(in + 8) ^ rd64(sec + 8));
}

static uint64_t len_0to16(const uint8_t *in, size_t len)
{
    const uint8_t *s = k_secret;
    if (len > 8) {
        uint64_t lo = rd64(in) ^ (rd64(s + 24) ^ rd64(s + 32));
        uint64_t hi = rd64(in + len - 8) ^ (rd64(s + 40) ^ rd64(s + 48));
        uint64_t acc = len + __builtin_bswap64(lo) + hi + mul128_fold64(lo, hi);
        return xxh3_avalanche(acc);
    }
    if (len >= 4) {
        uint64_t in64 = rd32(in + len - 4) + ((uint64_t)rd32(in) << 32);
        return rrmxmx(in64 ^ (rd64(s + 8) ^ rd64(s + 16)), len);
    }
    if (len > 0) {
        uint32_t combined = ((uint32_t)in[0] << 16) | ((uint32_t)in[len >> 1] << 24) |
                            (uint32_t)in[len - 1] | ((uint32_t)len << 8);
        return xxh64_avalanche((uint64_t)combined ^ (uint64_t)(rd32(s) ^ rd32(s + 4)));
    }
    return xxh64_avalanche(rd64(s + 56) ^ rd64(s + 64));
}

static uint64_t len_17to128(const uint8_t *in, size_t len)
{
    const uint8_t *s = k_secret;
    uint64_t acc = len * P64_1;
    if (len > 32) {
        if (len > 64) {
            if (len > 96) {
                acc += mix16(in + 48, s + 96);
                acc += mix16(in + len - 64, s + 112);
            }
            acc += mix16(in + 32, s + 64);
            acc += mix16(in + len - 48, s + 80);
        }
        acc += mix16(in + 16, s + 32);
        acc += mix16(in + len - 32, s + 48);
    }
    acc += mix16(in, s);
    acc += mix16(in + len - 16, s + 16);
    return xxh3_avalanche(acc);
}

static uint64_t len_129to240(const uint8_t *in, size_t len)
{
    const uint8_t *s = k_secret;
    uint64_t acc = len * P64_1;
    size_t rounds = len / 16, i;
    for (i = 0; i < 8; i++)
        acc += mix16(in + 16 * i, s + 16 * i);
    acc = xxh3_avalanche(acc);
    for (i = 8; i < rounds; i++)
        acc += mix16(in + 16 * i, s + 16 * (i - 8) + 3);
    acc += mix16(in + len - 16, s + 136 - 17);
    return xxh3_avalanche(acc);
}

/* ---- long inputs: one accumulate/scramble pair per instruction set ---- */

typedef void (*accumulate_fn)(uint64_t *acc, const uint8_t *in, const uint8_t *sec, size_t stripes);
typedef void (*scramble_fn)(uint64_t *acc, const uint8_t *sec);

static void accumulate_scalar(uint64_t *acc, const uint8_t *in, const uint8_t *sec, size_t stripes)
{
    for (size_t n = 0; n < stripes; n++) {
        const uint8_t *p = in + n * STRIPE, *k = sec + n * 8;
        for (int i = 0; i < 8; i++) {
            uint64_t v = rd64(p + 8 * i);
            uint64_t dk = v ^ rd64(k + 8 * i);
            acc[i ^ 1] += v;
            acc[i] += (uint64_t)(uint32_t)dk * (dk >> 32);
        }
    }
}

static void scramble_scalar(uint64_t *acc, const uint8_t *sec)
{
    for (int i = 0; i < 8; i++) {
        uint64_t a = acc[i];
        a ^= a >> 47;
        a ^= rd64(sec + 8 * i);
        acc[i] = a * P32_1;
    }
}

#ifdef DT_HAVE_X86
static void accumulate_sse2(uint64_t *acc, const uint8_t *in, const uint8_t *sec, size_t stripes)
{
    __m128i a[4];
    for (int i = 0; i < 4; i++)
        a[i] = _mm_loadu_si128((const __m128i *)(acc + 2 * i));
    for (size_t n = 0; n < stripes; n++) {
        const uint8_t *p = in + n * STRIPE, *k = sec + n * 8;
        for (int i = 0; i < 4; i++) {
            __m128i d = _mm_loadu_si128((const __m128i *)(p + 16 * i));
            __m128i dk = _mm_xor_si128(d, _mm_loadu_si128((const __m128i *)(k + 16 * i)));
            __m128i prod = _mm_mul_epu32(dk, _mm_shuffle_epi32(dk, _MM_SHUFFLE(0, 3, 0, 1)));
            __m128i swapped = _mm_shuffle_epi32(d, _MM_SHUFFLE(1, 0, 3, 2));
            a[i] = _mm_add_epi64(a[i], _mm_add_epi64(prod, swapped));
        }
    }
    for (int i = 0; i < 4; i++)
        _mm_storeu_si128((__m128i *)(acc + 2 * i), a[i]);
}

static void scramble_sse2(uint64_t *acc, const uint8_t *sec)
{
    const __m128i prime = _mm_set1_epi32((int)P32_1);
    for (int i = 0; i < 4; i++) {
        __m128i a = _mm_loadu_si128((const __m128i *)(acc + 2 * i));
        a = _mm_xor_si128(a, _mm_srli_epi64(a, 47));
        a = _mm_xor_si128(a, _mm_loadu_si128((const __m128i *)(sec + 16 * i)));
        __m128i lo = _mm_mul_epu32(a, prime);
        __m128i hi = _mm_mul_epu32(_mm_srli_epi64(a, 32), prime);
        _mm_storeu_si128((__m128i *)(acc + 2 * i), _mm_add_epi64(lo, _mm_slli_epi64(hi, 32)));
    }
}

__attribute__((target("avx2")))
static void accumulate_avx2(uint64_t *acc, const uint8_t *in, const uint8_t *sec, size_t stripes)
{
    __m256i a0 = _mm256_loadu_si256((const __m256i *)acc);
    __m256i a1 = _mm256_loadu_si256((const __m256i *)(acc + 4));
    for (size_t n = 0; n < stripes; n++) {
        const uint8_t *p = in + n * STRIPE, *k = sec + n * 8;
        __m256i d0 = _mm256_loadu_si256((const __m256i *)p);
        __m256i d1 = _mm256_loadu_si256((const __m256i *)(p + 32));
        __m256i k0 = _mm256_xor_si256(d0, _mm256_loadu_si256((const __m256i *)k));
        __m256i k1 = _mm256_xor_si256(d1, _mm256_loadu_si256((const __m256i *)(k + 32)));
        __m256i p0 = _mm256_mul_epu32(k0, _mm256_shuffle_epi32(k0, _MM_SHUFFLE(0, 3, 0, 1)));
        __m256i p1 = _mm256_mul_epu32(k1, _mm256_shuffle_epi32(k1, _MM_SHUFFLE(0, 3, 0, 1)));
        a0 = _mm256_add_epi64(a0, _mm256_add_epi64(p0, _mm256_shuffle_epi32(d0, _MM_SHUFFLE(1, 0, 3, 2))));
        a1 = _mm256_add_epi64(a1, _mm256_add_epi64(p1, _mm256_shuffle_epi32(d1, _MM_SHUFFLE(1, 0, 3, 2))));
    }
    _mm256_storeu_si256((__m256i *)acc, a0);
    _mm256_storeu_si256((__m256i *)(acc + 4), a1);
}

__attribute__((target("avx2")))
static void scramble_avx2(uint64_t *acc, const uint8_t *sec)
{
    const __m256i prime = _mm256_set1_epi32((int)P32_1);
    for (int i = 0; i < 2; i++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(acc + 4 * i));
        a = _mm256_xor_si256(a, _mm256_srli_epi64(a, 47));
        a = _mm256_xor_si256(a, _mm256_loadu_si256((const __m256i *)(sec + 32 * i)));
        __m256i lo = _mm256_mul_epu32(a, prime);
        __m256i hi = _mm256_mul_epu32(_mm256_srli_epi64(a, 32), prime);
        _mm256_storeu_si256((__m256i *)(acc + 4 * i), _mm256_add_epi64(lo, _mm256_slli_epi64(hi, 32)));
    }
}
#endif

static int forced_impl = DT_XXH3_AUTO;

static int best_impl(void)
{
#ifdef DT_HAVE_X86
    if (__builtin_cpu_supports("avx2"))
        return DT_XXH3_AVX2;
    return DT_XXH3_SSE2;
#else
    return DT_XXH3_SCALAR;
#endif
}

int dt_xxh3_select(int impl)
{
    int best = best_impl();
    if (impl == DT_XXH3_AUTO || impl < DT_XXH3_AUTO || impl > best)
        forced_impl = DT_XXH3_AUTO;
    else
        forced_impl = impl;
    return forced_impl == DT_XXH3_AUTO ? best : forced_impl;
}

static uint64_t hash_long(const uint8_t *in, size_t len)
{
    accumulate_fn accumulate = accumulate_scalar;
    scramble_fn scramble = scramble_scalar;
    int impl = forced_impl == DT_XXH3_AUTO ? best_impl() : forced_impl;
#ifdef DT_HAVE_X86
    if (impl == DT_XXH3_AVX2) {
        accumulate = accumulate_avx2;
        scramble = scramble_avx2;
    } else if (impl == DT_XXH3_SSE2) {
        accumulate = accumulate_sse2;
        scramble = scramble_sse2;
    }
#else
    (void)impl;
#endif
    uint64_t acc[8] = {P32_3, P64_1, P64_2, P64_3, P64_4, P32_2, P64_5, P32_1};
    size_t blocks = (len - 1) / BLOCK_LEN;
    for (size_t b = 0; b < blocks; b++) {
        accumulate(acc, in + b * BLOCK_LEN, k_secret, STRIPES_PER_BLOCK);
        scramble(acc, k_secret + SECRET_SIZE - STRIPE);
    }
    size_t stripes = ((len - 1) - BLOCK_LEN * blocks) / STRIPE;
    accumulate(acc, in + blocks * BLOCK_LEN, k_secret, stripes);
    accumulate(acc, in + len - STRIPE, k_secret + SECRET_SIZE - STRIPE - 7, 1);

    uint64_t h = len * P64_1;
    for (int i = 0; i < 4; i++)
        h += mul128_fold64(acc[2 * i] ^ rd64(k_secret + 11 + 16 * i),
                           acc[2 * i + 1] ^ rd64(k_secret + 11 + 16 * i + 8));
    return xxh3_avalanche(h);
}

uint64_t dt_xxh3_64(const uint8_t *data, size_t len)
{
    if (len <= 16)
        return len_0to16(data, len);
    if (len <= 128)
        return len_17to128(data, len);
    if (len <= 240)
        return len_129to240(data, len);
    return hash_long(data, len);
}
