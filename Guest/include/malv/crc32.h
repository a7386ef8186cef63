/* CRC-32 (IEEE 802.3, reflected, as zlib's crc32()). */
#ifndef MALV_CRC32_H
#define MALV_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Start with crc = 0; feed the previous result to continue. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t len);

#endif
