/*
 * Application processors: the real-mode trampoline a SIPI starts them in,
 * and their way up to ring 3.
 *
 * An AP leaves INIT at CS:IP = (vector << 8):0 in real mode, so the
 * trampoline must run below 1 MiB: lib/smp.c copies the bytes between
 * ap_trampoline_start and ap_trampoline_end to AP_TRAMPOLINE_BASE and names
 * that page in the SIPI. Everything the trampoline addresses is therefore
 * computed as AP_TRAMPOLINE_BASE + (label - ap_trampoline_start). It carries
 * its own small GDT for the 32-bit step, then jumps into the image, where
 * ap_entry64 switches to the guest's own GDT and IDT and drops to ring 3
 * with interrupts off: APs have no TSS of their own, so nothing may bring
 * them back to ring 0 (an exception on an AP is fatal, as a triple fault).
 */
#include "malv/layout.h"

#define CR0_PE          (1 << 0)
#define CR0_MP          (1 << 1)
#define CR0_NE          (1 << 5)
#define CR0_PG          (1 << 31)
#define CR4_PAE         (1 << 5)
#define CR4_OSFXSR      (1 << 9)
#define CR4_OSXMMEXCPT  (1 << 10)
#define MSR_EFER        0xc0000080
#define EFER_LME        (1 << 8)
#define RFLAGS_FIXED    (1 << 1)

#define TRAMPOLINE(label) (AP_TRAMPOLINE_BASE + ((label) - ap_trampoline_start))
#define T_CODE32  0x08
#define T_DATA    0x10
#define T_CODE64  0x18

    .section .rodata.ap_trampoline, "a"
    .balign 16
    .globl ap_trampoline_start, ap_trampoline_end
    .code16
ap_trampoline_start:
    cli
    mov     %cs, %ax
    mov     %ax, %ds
    lgdtl   tr_gdt_ptr - ap_trampoline_start
    mov     %cr0, %eax
    or      $CR0_PE, %eax
    mov     %eax, %cr0
    ljmpl   $T_CODE32, $TRAMPOLINE(1f)

    .code32
1:  mov     $T_DATA, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     $(CR4_PAE | CR4_OSFXSR | CR4_OSXMMEXCPT), %eax
    mov     %eax, %cr4
    mov     TRAMPOLINE(tr_cr3), %eax
    mov     %eax, %cr3
    mov     $MSR_EFER, %ecx
    mov     $EFER_LME, %eax
    xor     %edx, %edx
    wrmsr
    mov     $(CR0_PG | CR0_NE | CR0_MP | CR0_PE), %eax
    mov     %eax, %cr0
    ljmp    $T_CODE64, $TRAMPOLINE(2f)

    .code64
2:  mov     TRAMPOLINE(tr_entry), %rax
    jmp     *%rax

    .balign 8
tr_gdt:
    .quad   0
    .quad   0x00cf9b000000ffff      /* T_CODE32: flat 32-bit code */
    .quad   0x00cf93000000ffff      /* T_DATA */
    .quad   0x00af9b000000ffff      /* T_CODE64 */
tr_gdt_end:
    .word   0
tr_gdt_ptr:
    .word   tr_gdt_end - tr_gdt - 1
    .long   TRAMPOLINE(tr_gdt)
    .balign 8
tr_cr3:
    .quad   pml4
tr_entry:
    .quad   ap_entry64
ap_trampoline_end:

    .section .boot.text, "ax"
    .code64
ap_entry64:
    /*
     * lib/smp.c hands each AP its stack and index before the SIPI and waits
     * for it. The stack comes first: rsp is 0 after INIT, and the far return
     * below pushes.
     */
    mov     ap_boot_stack(%rip), %rsi
    mov     ap_boot_index(%rip), %edi
    mov     %rsi, %rsp
    lgdt    gdt_ptr(%rip)
    mov     $KERNEL_DS, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    push    $KERNEL_CS
    lea     1f(%rip), %rax
    push    %rax
    lretq
1:  lidt    idt_ptr(%rip)
    push    $USER_DS
    push    %rsi
    push    $RFLAGS_FIXED
    push    $USER_CS
    push    $ap_user_entry
    iretq

    .text
ap_user_entry:
    fninit
    ldmxcsr ap_mxcsr_default(%rip)
    xor     %ebp, %ebp
    call    smp_ap_main
    ud2

    .section .rodata
    .balign 4
ap_mxcsr_default:
    .long   0x1f80

    .section .note.GNU-stack, "", @progbits
