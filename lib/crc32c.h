/* crc32c: the CRC-32C (Castagnoli) checksum that protects every persistent
 * record of kubefence.
 *
 * Castagnoli rather than the zlib polynomial because x86-64 computes it in
 * hardware (SSE4.2 `crc32`), so checking every record during recovery costs
 * far less than reading it.  Without SSE4.2 a slicing-by-8 table is used; both
 * paths give identical results (test vector: "123456789" -> 0xE3069283). */
#pragma once

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32C over `len` bytes of `buf`.  Start with crc = 0; the
 * pre- and post-inversion are handled inside, so
 * crc32c(crc32c(0, a, n), b, m) == crc32c(0, a||b, n+m).  Never blocks;
 * thread-safe (the table is built once, under pthread_once). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);

/* The table-driven path alone, so tests compare it with the hardware path. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* 1 when the hardware path is used on this CPU, else 0. */
int crc32c_hw_available(void);
