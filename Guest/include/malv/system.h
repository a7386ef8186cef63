/* Starting and stopping the guest. */
#ifndef MALV_SYSTEM_H
#define MALV_SYSTEM_H

#include <stdint.h>

/* Entered in ring 3 by boot/pvh.S with the physical address of hvm_start_info. */
__attribute__((noreturn)) void guest_main(uint64_t start_info_paddr);

/*
 * Flushes the console and writes `code` to the debug-exit port: malvvm
 * returns it as its exit status, QEMU as (code << 1) | 1.
 */
__attribute__((noreturn)) void guest_exit(uint32_t code);

/* Halts the vCPU for good (hlt is ring 0 only, so this goes through int3). */
__attribute__((noreturn)) void guest_halt(void);

#endif
