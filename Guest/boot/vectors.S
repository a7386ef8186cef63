/*
 * Interrupt and exception entry. Every handler runs in emulated ring 0, where
 * each instruction costs ~0.5 us, so an IRQ is served in seven instructions:
 * bump a per-vector counter, EOI the LAPIC, return. Ring-3 code watches the
 * counters (see lib/intr.c). Exceptions are rare and take the slow path into
 * C (boot/trap.c), which reports them and stops the guest.
 */
#include "malv/layout.h"

/* Exceptions for which the CPU pushes an error code. */
#define HAS_ERROR_CODE(v) \
    ((v) == 8 || ((v) >= 10 && (v) <= 14) || (v) == 17 || (v) == 21 || (v) == 29 || (v) == 30)

/*
 * 256 stubs, 16 bytes each, at a 4 KiB-aligned base; tables.S builds the IDT
 * from that spacing. .org fails the build if a stub outgrows its slot.
 */
    .section .isr.stubs, "ax"
    .balign 4096
    .globl isr_stubs
isr_stubs:
    .set    vec, 0
    .rept   256
    .org    isr_stubs + 16 * vec, 0xcc
    .if     vec == 3
    jmp     breakpoint_entry
    .elseif vec < FIRST_IRQ_VECTOR
    .if     HAS_ERROR_CODE(vec)
    .else
    push    $0
    .endif
    push    $vec
    jmp     exception_common
    .else
    push    %rax
    lock incq irq_counts + 8 * vec
    .if     vec == SPURIOUS_VECTOR
    jmp     irq_return              /* a spurious interrupt must not be EOI'd */
    .else
    jmp     irq_eoi_return
    .endif
    .endif
    .set    vec, vec + 1
    .endr
    .org    isr_stubs + 4096, 0xcc

    .text
irq_eoi_return:
    mov     $LAPIC_EOI, %eax
    movl    $0, (%rax)
irq_return:
    pop     %rax
    iretq

/*
 * int3 (#BP, DPL 3, an interrupt gate: IF is off here). With SYS_WAIT_MAGIC in
 * eax it is cpu_wait_for_interrupt (lib/system.c): if irq_counts[rdi] still
 * equals rsi, halt until the next interrupt, which is served (counted) on this
 * stack before hlt returns. An interrupt that came after ring 3 read the count
 * either changed it already or is held pending by IF=0 until sti, whose
 * one-instruction shadow makes sti;hlt wake on it: no lost wakeups. iretq
 * restores ring 3's flags. Anything else is an exception.
 */
breakpoint_entry:
    cmp     $SYS_WAIT_MAGIC, %eax
    jne     1f
    cmp     %rsi, irq_counts(, %rdi, 8)
    jne     2f
    sti
    hlt
    cli
2:  iretq
1:  push    $0
    push    $3
    jmp     exception_common

/*
 * Stack on entry: vector, error code, then the CPU's frame. Saved in the
 * order of struct trap_frame (include/malv/trap.h).
 */
exception_common:
    push    %r15
    push    %r14
    push    %r13
    push    %r12
    push    %r11
    push    %r10
    push    %r9
    push    %r8
    push    %rbp
    push    %rdi
    push    %rsi
    push    %rdx
    push    %rcx
    push    %rbx
    push    %rax
    mov     %rsp, %rdi
    mov     %rsp, %rbx
    and     $-16, %rsp
    cld
    call    trap_entry
    mov     %rbx, %rsp
    pop     %rax
    pop     %rbx
    pop     %rcx
    pop     %rdx
    pop     %rsi
    pop     %rdi
    pop     %rbp
    pop     %r8
    pop     %r9
    pop     %r10
    pop     %r11
    pop     %r12
    pop     %r13
    pop     %r14
    pop     %r15
    add     $16, %rsp
    iretq

    .section .note.GNU-stack, "", @progbits
