/*
 * printf-style formatting: flags - + space # 0, width and precision (or *),
 * length hh h l ll z j t, conversions d i u x X o p c s f F e E %.
 */
#ifndef MALV_FORMAT_H
#define MALV_FORMAT_H

#include <stdarg.h>
#include <stddef.h>

typedef void (*format_sink)(void *ctx, char c);

/* Returns the number of characters produced. */
int vformat(format_sink sink, void *ctx, const char *fmt, va_list ap);

__attribute__((format(printf, 3, 4))) int snprintf(char *buf, size_t size, const char *fmt, ...);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);

#endif
