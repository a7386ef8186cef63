/* Starting and stopping the guest. */
#ifndef MALV_SYSTEM_H
#define MALV_SYSTEM_H

#include <stdint.h>

#include "malv/layout.h"

/* Entered in ring 3 by boot/pvh.S with the physical address of hvm_start_info. */
__attribute__((noreturn)) void guest_main(uint64_t start_info_paddr);

/*
 * Flushes the console and writes `code` to the debug-exit port: malvvm
 * returns it as its exit status, QEMU as (code << 1) | 1.
 */
__attribute__((noreturn)) void guest_exit(uint32_t code);

/* Halts the vCPU for good (hlt is ring 0 only, so this goes through int3). */
__attribute__((noreturn)) void guest_halt(void);

/*
 * Sleeps the vCPU until an interrupt arrives, unless irq_count(vector) has
 * already moved past `seen` (read it before checking whatever the interrupt
 * signals): int3 into ring 0, which re-checks the count with interrupts off
 * and then does sti;hlt (see boot/vectors.S). Returns after the interrupt has
 * been served; any vector wakes it, so callers loop.
 */
static inline void cpu_wait_for_interrupt(unsigned vector, uint64_t seen)
{
    __asm__ volatile("int3" : : "a"(SYS_WAIT_MAGIC), "D"((uint64_t)(vector & 0xff)), "S"(seen)
                     : "memory", "cc");
}

#endif
