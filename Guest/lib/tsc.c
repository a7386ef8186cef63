#include "malv/tsc.h"

#include "malv/intr.h"
#include "malv/pit.h"
#include "malv/x86.h"

#define CAL_HZ 1000
#define CAL_TICKS 100   /* 100 ms: interrupt latency here jitters by up to ~1 ms */
#define CAL_WAIT_CYCLES 4000000000ull

uint64_t tsc_calibrate(void)
{
    if (ioapic_pins() <= PIT_IOAPIC_PIN)
        return 0;
    lapic_enable();
    uint64_t base = irq_count(TSC_CAL_VECTOR);
    pit_start_periodic(CAL_HZ);
    ioapic_route(PIT_IOAPIC_PIN, TSC_CAL_VECTOR, (uint8_t)lapic_id());
    /* Start at an interrupt, not at an arbitrary point of a period. */
    bool ok = irq_wait(TSC_CAL_VECTOR, base + 1, CAL_WAIT_CYCLES);
    uint64_t t0 = rdtsc();
    ok = ok && irq_wait(TSC_CAL_VECTOR, base + 1 + CAL_TICKS, CAL_WAIT_CYCLES);
    uint64_t t1 = rdtsc();
    ioapic_mask(PIT_IOAPIC_PIN);
    pit_stop();
    if (!ok)
        return 0;
    uint64_t divisor = (PIT_HZ + CAL_HZ / 2) / CAL_HZ;
    return (t1 - t0) * PIT_HZ / (CAL_TICKS * divisor);
}
