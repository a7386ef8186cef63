/* What boot/vectors.S saves on an exception; read by the ring-0 reporter. */
#ifndef MALV_TRAP_H
#define MALV_TRAP_H

#include <stdint.h>

struct trap_frame {
    uint64_t rax, rbx, rcx, rdx, rsi, rdi, rbp;
    uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
    uint64_t vector, error;
    /* pushed by the CPU */
    uint64_t rip, cs, rflags, rsp, ss;
};

void trap_entry(struct trap_frame *frame);

#endif
