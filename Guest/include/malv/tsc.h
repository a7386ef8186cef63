/* TSC frequency, measured against the PIT (1.193182 MHz) through its interrupt. */
#ifndef MALV_TSC_H
#define MALV_TSC_H

#include <stdint.h>

/*
 * Times 100 periods of a 1 kHz PIT (IOAPIC pin 2, vector TSC_CAL_VECTOR),
 * from one interrupt to another; ~100 ms. Enables the LAPIC as a side
 * effect. Returns 0 if no interrupts arrive.
 */
uint64_t tsc_calibrate(void);

#define TSC_CAL_VECTOR 0x21

#endif
