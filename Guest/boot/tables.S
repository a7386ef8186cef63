/*
 * Every table the CPU needs in long mode, prebuilt as static data so that
 * ring 0 never runs a loop to build them (each emulated ring-0 instruction
 * costs ~0.5 us on our host).
 *
 * Descriptors split their base addresses into fields, which the assembler
 * cannot compute for relocatable symbols; linker.ld defines the pieces
 * (__isr_stubs_lo, __tss_mid, ...) as absolute symbols instead.
 */
#include "malv/layout.h"

#define PTE_P   0x01
#define PTE_W   0x02
#define PTE_U   0x04    /* set at every level: ring 3 reaches all of it */
#define PTE_PWT 0x08
#define PTE_PCD 0x10
#define PTE_PS  0x80    /* 2 MiB page */

/* Above 3 GiB is the PC's device hole (PCI BARs, IOAPIC, LAPIC): uncached. */
#define MMIO_HOLE 0xc0000000

    .section .data.pagetables, "aw"
    .balign 4096
    .globl pml4
pml4:
    .quad   pdpt + (PTE_P | PTE_W | PTE_U)
    .fill   511, 8, 0
pdpt:
    .quad   pd + 0x0000 + (PTE_P | PTE_W | PTE_U)
    .quad   pd + 0x1000 + (PTE_P | PTE_W | PTE_U)
    .quad   pd + 0x2000 + (PTE_P | PTE_W | PTE_U)
    .quad   pd + 0x3000 + (PTE_P | PTE_W | PTE_U)
    .fill   508, 8, 0
/* Four page directories: identity map of 0-4 GiB in 2 MiB pages. */
pd:
    .set    addr, 0
    .rept   2048
    .if     addr >= MMIO_HOLE
    .quad   addr | (PTE_P | PTE_W | PTE_U | PTE_PS | PTE_PWT | PTE_PCD)
    .else
    .quad   addr | (PTE_P | PTE_W | PTE_U | PTE_PS)
    .endif
    .set    addr, addr + 0x200000
    .endr

    .section .data.descriptors, "aw"
    .balign 16
    .globl gdt, idt, tss
/*
 * Accessed bits are preset so the CPU never has to write them back (one
 * fewer emulated memory write per segment load).
 */
gdt:
    .quad   0
    .quad   0x00af9b000000ffff      /* KERNEL_CS: 64-bit code, DPL 0 */
    .quad   0x00cf93000000ffff      /* KERNEL_DS */
    .quad   0x00affb000000ffff      /* USER_CS: 64-bit code, DPL 3 */
    .quad   0x00cff3000000ffff      /* USER_DS */
    /* TSS_SEL: 64-bit available TSS, 16 bytes */
    .word   tss_end - tss - 1
    .word   __tss_lo
    .byte   __tss_mid
    .byte   0x89
    .byte   0x00
    .byte   __tss_hi
    .long   __tss_top
    .long   0
gdt_end:

/* Used by the 32-bit lgdt (reads limit + low 4 bytes) and by lidt/lgdt in 64-bit mode. */
    .balign 8
    .word   0, 0, 0
    .globl gdt_ptr
gdt_ptr:
    .word   gdt_end - gdt - 1
    .quad   gdt

    .balign 8
    .word   0, 0, 0
    .globl idt_ptr
idt_ptr:
    .word   idt_end - idt - 1
    .quad   idt

/*
 * 256 interrupt gates into boot/vectors.S, whose stubs sit 16 bytes apart
 * from a 4 KiB-aligned base (so adding 16*v never carries out of the low 16
 * bits). #BP has DPL 3 so ring 3 can reach ring 0 with int3; NMI, #DF and #MC
 * switch to the IST1 stack.
 */
    .macro  idt_gate vec
    .word   __isr_stubs_lo + 16 * \vec
    .word   KERNEL_CS
    .if     (\vec == 2) || (\vec == 8) || (\vec == 18)
    .byte   1
    .else
    .byte   0
    .endif
    .if     \vec == 3
    .byte   0xee
    .else
    .byte   0x8e
    .endif
    .word   __isr_stubs_mid
    .long   __isr_stubs_hi
    .long   0
    .endm

    .balign 16
idt:
    .altmacro
    .set    vec, 0
    .rept   256
    idt_gate %vec
    .set    vec, vec + 1
    .endr
    .noaltmacro
idt_end:

/*
 * 64-bit TSS. This host ignores IOPL 3, so ring 3 gets its ports from an I/O
 * permission bitmap of zeros covering all 65536 ports, plus the 0xff byte the
 * CPU reads past the end. The limit includes that byte.
 */
    .balign 128
tss:
    .long   0
    .quad   kernel_stack_top        /* rsp0 */
    .quad   0, 0                    /* rsp1, rsp2 */
    .quad   0
    .quad   ist1_stack_top          /* ist1 */
    .fill   6, 8, 0                 /* ist2-7 */
    .quad   0
    .word   0
    .word   tss_iomap - tss
tss_iomap:
    .fill   8192, 1, 0
    .byte   0xff
tss_end:

    .section .note.GNU-stack, "", @progbits
