/* The 8254 PIT, channel 0. Its IRQ0 arrives on IOAPIC pin 2. */
#ifndef MALV_PIT_H
#define MALV_PIT_H

#include <stdint.h>

#define PIT_HZ 1193182u
#define PIT_IOAPIC_PIN 2

/* Mode 2 (rate generator) at about `hz` interrupts per second. */
void pit_start_periodic(unsigned hz);
/* Switches channel 0 to a one-shot count so it stops ticking. */
void pit_stop(void);
/* Latches and reads channel 0's current count (counts down). */
uint16_t pit_read_counter(void);

#endif
