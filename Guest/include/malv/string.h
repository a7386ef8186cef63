/* The C string functions the guest uses (gcc also emits calls to mem*). */
#ifndef MALV_STRING_H
#define MALV_STRING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

void *memset(void *dst, int c, size_t n);
void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
size_t strnlen(const char *s, size_t max);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);
char *strchr(const char *s, int c);

/* Copies at most size-1 bytes and always terminates; returns strlen(src). */
size_t strlcpy(char *dst, const char *src, size_t size);

/*
 * Parses an unsigned number: decimal, or hex with a 0x prefix. Stops at the
 * first character that is not a digit and stores its address in *end (if
 * end is not NULL). Returns false if no digit was read or the value overflows.
 */
bool parse_u64(const char *s, uint64_t *value, const char **end);

#endif
