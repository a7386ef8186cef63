/*
 * Serial console on COM1. Output is buffered and each line leaves in one
 * `rep outsb`: a VMM may take a string PIO with a count in one exit. KVM
 * does not (it emulates OUTS one element per exit: measured ~33 us per byte
 * on our host, the same as outb), so serial output costs ~2 ms per 60-byte
 * line here. Keep it off hot paths.
 */
#ifndef MALV_CONSOLE_H
#define MALV_CONSOLE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#define CONSOLE_BUF_SIZE 512

struct console_state {
    /* Aligned to its size so a flush never crosses a page (one exit, not two). */
    char buf[CONSOLE_BUF_SIZE] __attribute__((aligned(CONSOLE_BUF_SIZE)));
    uint32_t len;
};

/* Exposed so the exception reporter can emit a half-written line. */
extern struct console_state console;

void console_putc(char c);
void console_write(const char *s, size_t n);
void console_puts(const char *s);
void console_flush(void);

__attribute__((format(printf, 1, 2))) int printf(const char *fmt, ...);
int vprintf(const char *fmt, va_list ap);

#endif
