/*
 * Ring-0 exception reporter. Built with -mgeneral-regs-only -mno-red-zone
 * (see scripts/build-guest): it runs on the interrupt stack while ring 3's
 * SSE state is live, and it must not depend on anything in lib/, which is
 * compiled for ring 3. Speed does not matter here; the guest is stopping.
 */
#include <stddef.h>
#include <stdint.h>

#include "malv/console.h"
#include "malv/layout.h"
#include "malv/trap.h"
#include "malv/x86.h"

static const char *const exception_names[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
    "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "#15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "#22", "#23",
    "#24", "#25", "#26", "#27", "#HV", "#VC", "#SX", "#31",
};

struct line {
    char buf[160];
    size_t len;
};

static void put_str(struct line *l, const char *s)
{
    while (*s && l->len < sizeof l->buf)
        l->buf[l->len++] = *s++;
}

static void put_hex(struct line *l, uint64_t v, int digits)
{
    for (int shift = (digits - 1) * 4; shift >= 0; shift -= 4)
        if (l->len < sizeof l->buf)
            l->buf[l->len++] = "0123456789abcdef"[(v >> shift) & 0xf];
}

static void put_field(struct line *l, const char *name, uint64_t v, int digits)
{
    put_str(l, name);
    put_hex(l, v, digits);
}

static void emit(struct line *l)
{
    put_str(l, "\n");
    outsb(COM1_PORT, l->buf, l->len);
    l->len = 0;
}

static __attribute__((noreturn)) void halt_forever(void)
{
    for (;;)
        __asm__ volatile("cli; hlt");
}

void trap_entry(struct trap_frame *f)
{
    if (f->vector == 3 && (uint32_t)f->rax == SYS_HALT_MAGIC)
        halt_forever();

    uint64_t cr2;
    __asm__ volatile("mov %%cr2, %0" : "=r"(cr2));

    /* Whatever ring 3 had not flushed yet goes out first, on its own line. */
    if (console.len > 0 && console.len <= sizeof console.buf) {
        outsb(COM1_PORT, console.buf, console.len);
        outsb(COM1_PORT, "\n", 1);
    }

    struct line l = { .len = 0 };
    put_str(&l, "*** guest exception ");
    put_hex(&l, f->vector, 2);
    put_str(&l, " ");
    put_str(&l, f->vector < 32 ? exception_names[f->vector] : "IRQ");
    put_field(&l, " error 0x", f->error, 8);
    put_field(&l, " rip 0x", f->rip, 16);
    put_field(&l, " cr2 0x", cr2, 16);
    put_str(&l, (f->cs & 3) == 3 ? " (ring 3)" : " (ring 0)");
    emit(&l);
    put_field(&l, "    rsp 0x", f->rsp, 16);
    put_field(&l, " rflags 0x", f->rflags, 8);
    put_field(&l, " rax 0x", f->rax, 16);
    put_field(&l, " rbx 0x", f->rbx, 16);
    emit(&l);
    put_field(&l, "    rcx 0x", f->rcx, 16);
    put_field(&l, " rdx 0x", f->rdx, 16);
    put_field(&l, " rsi 0x", f->rsi, 16);
    put_field(&l, " rdi 0x", f->rdi, 16);
    emit(&l);

    outl(EXIT_PORT, EXIT_EXCEPTION);
    halt_forever();
}
