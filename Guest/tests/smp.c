/*
 * test=smp: every CPU the MADT lists comes up and does work. The BSP starts
 * each AP with INIT-SIPI-SIPI (lib/smp.c) into ring 3, every CPU (the BSP
 * too) runs the same integer job seeded by its index and reports its LAPIC
 * ID, and the BSP checks each result against its own run of the job. Output
 * is deterministic for a given CPU count, so malvvm's and QEMU's runs compare.
 * With hold=1 the BSP spins after PASS (the APs already do), so the host can
 * pause, inspect and stop a VM whose every vCPU is running guest code.
 */
#include "malv/acpi.h"
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/intr.h"
#include "malv/smp.h"
#include "malv/test.h"
#include "malv/x86.h"

#define WORK_ROUNDS 2000000u
/* Generous: a start through emulated real mode costs milliseconds, not seconds. */
#define START_TIMEOUT_CYCLES 20000000000ull

struct cpu_slot {
    volatile uint64_t result;
    volatile uint32_t apic_id;
    volatile uint32_t done;
} __attribute__((aligned(64)));  /* one cache line each: no false sharing between CPUs */

static struct cpu_slot slots[SMP_MAX_CPUS];

/* xorshift64 over WORK_ROUNDS steps, seeded by the CPU's index. */
static uint64_t job(unsigned index)
{
    uint64_t x = 0x9e3779b97f4a7c15ull * (index + 1), sum = 0;
    for (uint32_t i = 0; i < WORK_ROUNDS; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        sum += x;
    }
    return sum;
}

static void run_job(unsigned index)
{
    slots[index].apic_id = lapic_id();
    slots[index].result = job(index);
    __atomic_store_n(&slots[index].done, 1, __ATOMIC_RELEASE);
}

int test_smp(void)
{
    uint8_t apic_ids[SMP_MAX_CPUS];
    unsigned count = 0;
    const char *why = acpi_list_cpus(apic_ids, SMP_MAX_CPUS, &count);
    if (why) {
        printf("smp: FAIL (%s)\n", why);
        return 1;
    }
    lapic_enable();
    uint32_t bsp = lapic_id();
    printf("smp: %u cpus in the MADT, bsp apic %u\n", count, bsp);

    /* The BSP keeps index 0; APs take 1.. in MADT order. */
    unsigned next = 1, started = 1;
    uint64_t fastest = ~0ull, slowest = 0;
    bool bsp_listed = false;
    for (unsigned i = 0; i < count; i++) {
        if (apic_ids[i] == bsp) {
            bsp_listed = true;
            continue;
        }
        unsigned index = next++;
        uint64_t cycles = 0;
        if (smp_start_ap(apic_ids[i], index, run_job, START_TIMEOUT_CYCLES, &cycles)) {
            started++;
            fastest = cycles < fastest ? cycles : fastest;
            slowest = cycles > slowest ? cycles : slowest;
        } else
            printf("smp: apic %u did not start\n", apic_ids[i]);
    }
    if (!bsp_listed) {
        printf("smp: FAIL (the bsp's apic %u is not in the MADT)\n", bsp);
        return 1;
    }
    run_job(0);

    unsigned failures = 0;
    for (unsigned index = 0; index < next; index++) {
        uint64_t start = rdtsc();
        while (!__atomic_load_n(&slots[index].done, __ATOMIC_ACQUIRE) && rdtsc() - start < START_TIMEOUT_CYCLES)
            cpu_relax();
        bool done = __atomic_load_n(&slots[index].done, __ATOMIC_ACQUIRE);
        bool right = done && slots[index].result == job(index);
        bool unique = true;
        for (unsigned other = 0; other < index; other++)
            if (slots[other].done && slots[other].apic_id == slots[index].apic_id)
                unique = false;
        if (!done || !right || !unique)
            failures++;
        printf("smp: cpu %u apic %u: %s\n", index, slots[index].apic_id,
               !done ? "did not finish" : !right ? "wrong result" : !unique ? "apic id seen twice" : "ok");
    }
    if (failures || started != count) {
        printf("smp: FAIL (%u of %u cpus started, %u failed)\n", started, count, failures);
        return 1;
    }
    /* The one line that differs between runs and VMMs: comparisons drop it. */
    if (started > 1)
        printf("smp: SIPI to ring 3: %llu-%llu TSC cycles\n", (unsigned long long)fastest,
               (unsigned long long)slowest);
    printf("smp: PASS (%u cpus)\n", count);
    char hold[4] = "";
    if (cmdline_get("hold", hold, sizeof hold) && hold[0] == '1') {
        printf("smp: holding\n");
        console_flush();
        for (;;)
            cpu_relax();
    }
    return 0;
}
