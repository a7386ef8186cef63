/*
 * Interrupts, seen from ring 3. The ring-0 handlers (boot/vectors.S) only
 * count each vector and EOI the LAPIC; code here programs the LAPIC and
 * IOAPIC and waits on the counters. IF is on from the moment ring 3 starts,
 * so an interrupt arrives as soon as a source is unmasked.
 */
#ifndef MALV_INTR_H
#define MALV_INTR_H

#include <stdbool.h>
#include <stdint.h>

/* Incremented by the ring-0 stubs; one vCPU, so 64-bit loads are exact. */
extern volatile uint64_t irq_counts[256];

static inline uint64_t irq_count(unsigned vector)
{
    return irq_counts[vector & 0xff];
}

/* Software-enables the LAPIC (SVR bit 8) with TPR 0 and the spurious vector. */
void lapic_enable(void);
uint32_t lapic_id(void);

/*
 * The LAPIC timer as a one-shot alarm on `vector` (divide by 16): counting
 * down from `count` at the APIC bus clock (1 GHz under KVM, so 6250000 is
 * ~100 ms). A waiter that sleeps in cpu_wait_for_interrupt arms it so a lost
 * device interrupt costs one period instead of a hang. count 0 disarms.
 */
void lapic_timer_oneshot(uint8_t vector, uint32_t count);

/* Number of redirection entries in the IOAPIC. */
unsigned ioapic_pins(void);
/* Fixed delivery, physical destination, edge-triggered, active high. */
void ioapic_route(unsigned pin, uint8_t vector, uint8_t apic_id);
void ioapic_mask(unsigned pin);

/*
 * Waits until irq_count(vector) reaches `target` or `max_cycles` TSC cycles
 * pass. Returns whether the count was reached. Never waits unbounded: there
 * is also an iteration cap in case the TSC does not move.
 */
bool irq_wait(unsigned vector, uint64_t target, uint64_t max_cycles);

#endif
