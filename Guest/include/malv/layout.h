/*
 * Constants shared by the boot assembly and the C code. Plain #defines only:
 * this header is included from .S files.
 */
#ifndef MALV_LAYOUT_H
#define MALV_LAYOUT_H

/* GDT selectors; the order is fixed by boot/tables.S. */
#define KERNEL_CS       0x08
#define KERNEL_DS       0x10
#define USER_CS         (0x18 | 3)
#define USER_DS         (0x20 | 3)
#define TSS_SEL         0x28

/* Interrupt vectors: 0-31 are exceptions, everything above counts as an IRQ. */
#define FIRST_IRQ_VECTOR 0x20
#define SPURIOUS_VECTOR 0xff

/* int3 with this in eax is a request to halt rather than a breakpoint. */
#define SYS_HALT_MAGIC  0x544c4148      /* "HALT" */
#define SYS_WAIT_MAGIC  0x54494157      /* "WAIT": cpu_wait_for_interrupt (boot/vectors.S) */

/* Platform addresses the VMM (and QEMU's microvm/pc) put devices at. */
#define LAPIC_BASE      0xfee00000
#define LAPIC_EOI       (LAPIC_BASE + 0xb0)
#define IOAPIC_BASE     0xfec00000
#define COM1_PORT       0x3f8
#define EXIT_PORT       0xf4            /* isa-debug-exit, iosize 4 */

/*
 * Where lib/smp.c copies the AP start-up trampoline (boot/ap.S): a page below
 * 1 MiB that a SIPI can name (vector 0x10) and that neither malvvm's nor
 * QEMU's boot information uses.
 */
#define AP_TRAMPOLINE_BASE 0x10000

/* Exit codes written to EXIT_PORT. */
#define EXIT_OK             0
#define EXIT_FAILED         1
#define EXIT_UNKNOWN_TEST   2
#define EXIT_BAD_BOOT_INFO  3
#define EXIT_EXCEPTION      0x7f

#endif
