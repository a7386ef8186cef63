/*
 * PVH entry: 32-bit protected mode, paging off, ebx = &hvm_start_info.
 *
 * Ring 0 is emulated on our host (~0.5 us per instruction), so this path does
 * the minimum: every table it loads (page tables, GDT, IDT, TSS) is prebuilt
 * in the image by boot/tables.S, and everything else happens in ring 3.
 */
#include "malv/layout.h"

#define CR0_PE          (1 << 0)
#define CR0_MP          (1 << 1)    /* with EM clear: SSE/x87 run natively */
#define CR0_NE          (1 << 5)
#define CR0_PG          (1 << 31)
#define CR4_PAE         (1 << 5)
#define CR4_OSFXSR      (1 << 9)
#define CR4_OSXMMEXCPT  (1 << 10)
#define MSR_EFER        0xc0000080
#define EFER_LME        (1 << 8)
#define RFLAGS_IF       (1 << 9)
#define RFLAGS_FIXED    (1 << 1)

/*
 * XEN_ELFNOTE_PHYS32_ENTRY. The descriptor is 8 bytes like Linux's: QEMU
 * reads a size_t from ELF64 notes, and the low 32 bits are the entry either
 * way. QEMU pads the name to the PT_NOTE alignment, so keep that at 4.
 */
    .section .note.Xen, "a", @note
    .balign 4
    .long 2f - 1f           /* namesz */
    .long 4f - 3f           /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
1:  .asciz "Xen"
2:  .balign 4
3:  .quad pvh_start
4:  .balign 4

    .section .boot.text, "ax"
    .code32
    .globl pvh_start
pvh_start:
    /* The loader's GDT may be gone or at an unknown place: use ours. */
    lgdt    gdt_ptr
    mov     $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    mov     %eax, %cr4
    mov     $pml4, %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    mov     $EFER_LME, %eax
    xor     %edx, %edx
    wrmsr
    /* Written whole, which also clears CD/NW and EM/TS if firmware left them. */
    mov     $(CR0_PG | CR0_NE | CR0_MP | CR0_PE), %eax
    mov     %eax, %cr0
    ljmp    $KERNEL_CS, $1f

    .code64
1:  mov     $KERNEL_DS, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     $kernel_stack_top, %esp
    mov     $TSS_SEL, %eax
    ltr     %ax
    lidt    idt_ptr(%rip)
    /*
     * Mask both 8259s before IF goes on: SeaBIOS (-M pc) leaves the PIT
     * running on IRQ0 with the PIC at vector 8, which would look like #DF.
     * We route interrupts through the IOAPIC instead.
     */
    mov     $0xff, %al
    out     %al, $0xa1
    out     %al, $0x21
    /* Upper halves of registers are undefined after the mode switch. */
    mov     %ebx, %edi
    /* IF is set here because sti/popf cannot set it from ring 3 on this host. */
    push    $USER_DS
    push    $user_stack_top
    push    $(RFLAGS_IF | RFLAGS_FIXED)
    push    $USER_CS
    push    $user_entry
    iretq

/* From here on everything runs in ring 3 at native speed. */
    .text
user_entry:
    mov     %rdi, %r12
    /* Zero .bss ourselves rather than trust every loader to do it. */
    lea     __bss_start(%rip), %rdi
    lea     __bss_end(%rip), %rcx
    sub     %rdi, %rcx
    xor     %eax, %eax
    cld
    rep stosb
    /* The x87 reset state unmasks exceptions; give C the usual defaults. */
    fninit
    ldmxcsr mxcsr_default(%rip)
    mov     %r12, %rdi
    xor     %ebp, %ebp
    call    guest_main
    ud2

    .section .rodata
    .balign 4
mxcsr_default:
    .long   0x1f80

/* Stacks live in .bss: RSP0 for interrupts from ring 3, IST1 for NMI/#DF/#MC. */
    .section .bss.stacks, "aw", @nobits
    .balign 4096
    .globl kernel_stack_top, ist1_stack_top
kernel_stack:
    .skip   16384
kernel_stack_top:
ist1_stack:
    .skip   4096
ist1_stack_top:
user_stack:
    .skip   65536
user_stack_top:

    .section .note.GNU-stack, "", @progbits
