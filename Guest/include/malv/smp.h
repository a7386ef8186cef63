/*
 * Starting application processors: INIT, SIPI, SIPI through the BSP's LAPIC
 * (Intel SDM vol. 3, "MP Initialization"), into the trampoline of boot/ap.S
 * and on to a C function in ring 3. APs run with interrupts off and never
 * return to ring 0; when their function returns they spin.
 */
#ifndef MALV_SMP_H
#define MALV_SMP_H

#include <stdbool.h>
#include <stdint.h>

#define SMP_MAX_CPUS 64
#define SMP_AP_STACK_SIZE 16384

typedef void (*smp_ap_function)(unsigned index);

/*
 * Starts the CPU with LAPIC ID `apic_id` running fn(index) on a stack of its
 * own, and waits until it has reached ring 3 (at most ~`timeout_cycles` TSC
 * cycles). Call for one AP at a time. Returns whether it arrived, and in
 * *start_cycles (if not NULL) the TSC cycles from the first SIPI to ring 3.
 */
bool smp_start_ap(uint8_t apic_id, unsigned index, smp_ap_function fn, uint64_t timeout_cycles,
                  uint64_t *start_cycles);

#endif
