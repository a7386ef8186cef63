#include "malv/console.h"

#include "malv/format.h"
#include "malv/layout.h"
#include "malv/x86.h"

/*
 * No UART programming: the emulated 8250s of QEMU and malvvm send whatever
 * lands in THR, and polling LSR would cost an exit per byte.
 */
struct console_state console;

void console_flush(void)
{
    if (console.len == 0)
        return;
    outsb(COM1_PORT, console.buf, console.len);
    console.len = 0;
}

void console_putc(char c)
{
    console.buf[console.len++] = c;
    if (c == '\n' || console.len == CONSOLE_BUF_SIZE)
        console_flush();
}

void console_write(const char *s, size_t n)
{
    while (n--)
        console_putc(*s++);
}

void console_puts(const char *s)
{
    while (*s)
        console_putc(*s++);
}

static void console_sink(void *ctx, char c)
{
    (void)ctx;
    console_putc(c);
}

int vprintf(const char *fmt, va_list ap)
{
    return vformat(console_sink, NULL, fmt, ap);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}
