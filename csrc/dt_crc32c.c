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
#include <nmmintrin.h>

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
#endif

static int impl = -1;

int dt_crc32c_select(int want)
{
#if defined(__x86_64__)
    int have = __builtin_cpu_supports("sse4.2") != 0; /* it returns a feature bit, not 1 */
#else
    int have = 0;
#endif
    impl = want >= 1 && have ? 1 : want < 0 ? have : 0;
    return impl;
}

uint32_t dt_crc32c(uint32_t crc, const void *data, size_t length)
{
    if (impl < 0)
        dt_crc32c_select(-1);
    crc = ~crc;
#if defined(__x86_64__)
    if (impl == 1)
        return ~crc_sse42(crc, data, length);
#endif
    return ~crc_table(crc, data, length);
}
