/* CRC-32C (Castagnoli, iSCSI polynomial 0x1EDC6F41, reflected), the checksum
 * of every journal record and wire frame.  Carry-less multiplication folding
 * (AVX-512 VPCLMULQDQ) or SSE4.2's crc32 instruction when the CPU has them,
 * a slicing-by-8 table otherwise. */
#ifndef DT_CRC32C_H
#define DT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC: start with crc = 0; the result of one call feeds the next. */
uint32_t dt_crc32c(uint32_t crc, const void *data, size_t length);

/* Force an implementation (0 = table, 1 = SSE4.2, 2 = VPCLMULQDQ; -1 = the
 * best the CPU has) for tests; returns the one in use, never one the CPU
 * lacks. */
int dt_crc32c_select(int impl);

#endif
