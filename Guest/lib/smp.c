#include "malv/smp.h"

#include "malv/intr.h"
#include "malv/layout.h"
#include "malv/string.h"
#include "malv/x86.h"

#define LAPIC_ICR_LOW   0x300
#define LAPIC_ICR_HIGH  0x310
#define ICR_INIT        0x00000500
#define ICR_STARTUP     0x00000600
#define ICR_LEVEL_ASSERT 0x00004000
#define ICR_PENDING     (1u << 12)
#define INIT_WAIT_CYCLES 20000000ull

extern const uint8_t ap_trampoline_start[], ap_trampoline_end[];

/* Read by boot/ap.S on the AP being started; one AP starts at a time. */
volatile uint64_t ap_boot_stack;
volatile uint32_t ap_boot_index;

static smp_ap_function volatile ap_function;
static volatile uint32_t ap_arrived;
static uint8_t ap_stacks[SMP_MAX_CPUS][SMP_AP_STACK_SIZE] __attribute__((aligned(16)));

/* Ring 3 on the AP, from boot/ap.S. */
__attribute__((noreturn)) void smp_ap_main(unsigned index)
{
    smp_ap_function fn = ap_function;
    __atomic_store_n(&ap_arrived, 1, __ATOMIC_RELEASE);
    fn(index);
    for (;;)
        cpu_relax();
}

static void send_ipi(uint8_t apic_id, uint32_t command)
{
    mmio_write32(LAPIC_BASE + LAPIC_ICR_HIGH, (uint32_t)apic_id << 24);
    mmio_write32(LAPIC_BASE + LAPIC_ICR_LOW, command);
    for (unsigned i = 0; i < 1000000 && (mmio_read32(LAPIC_BASE + LAPIC_ICR_LOW) & ICR_PENDING); i++)
        cpu_relax();
}

static bool wait_arrived(uint64_t cycles)
{
    uint64_t start = rdtsc();
    while (!__atomic_load_n(&ap_arrived, __ATOMIC_ACQUIRE)) {
        if (rdtsc() - start > cycles)
            return false;
        cpu_relax();
    }
    return true;
}

bool smp_start_ap(uint8_t apic_id, unsigned index, smp_ap_function fn, uint64_t timeout_cycles,
                  uint64_t *start_cycles)
{
    if (index >= SMP_MAX_CPUS)
        return false;
    /* Ring 3 reaches low memory through the identity map like any other page. */
    memcpy((void *)(uintptr_t)AP_TRAMPOLINE_BASE, ap_trampoline_start,
           (size_t)(ap_trampoline_end - ap_trampoline_start));
    ap_boot_stack = (uint64_t)(uintptr_t)&ap_stacks[index][SMP_AP_STACK_SIZE];
    ap_boot_index = index;
    ap_function = fn;
    __atomic_store_n(&ap_arrived, 0, __ATOMIC_RELEASE);

    /* The SDM's universal start-up: INIT, then SIPI twice (the second is ignored
     * by a CPU the first one started). The SDM waits 10 ms after INIT: 2e7 TSC
     * cycles is 7-20 ms at 1-3 GHz (the TSC is not calibrated here). After a
     * SIPI we wait for the AP itself, so a CPU that came up skips the second. */
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
    wait_arrived(INIT_WAIT_CYCLES);
    uint32_t sipi = ICR_STARTUP | ICR_LEVEL_ASSERT | (AP_TRAMPOLINE_BASE >> 12);
    uint64_t sent = rdtsc();
    send_ipi(apic_id, sipi);
    bool arrived = wait_arrived(timeout_cycles / 2);
    if (!arrived) {
        send_ipi(apic_id, sipi);
        arrived = wait_arrived(timeout_cycles / 2);
    }
    if (start_cycles)
        *start_cycles = rdtsc() - sent;
    return arrived;
}
