/*
 * test=selftest: checks that catch a VMM that maps guest memory wrongly,
 * hides the host CPU, or delivers no timer interrupts. Each check prints
 * `selftest: <name> ... ok` or `... FAIL (<why>)`; the guest exits 0 only if
 * all pass.
 */
#include <stdbool.h>

#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/intr.h"
#include "malv/layout.h"
#include "malv/pit.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/x86.h"

#define PAGE_SIZE 4096ull
#define IDENTITY_MAP_END (1ull << 32)

#define TIMER_VECTOR FIRST_IRQ_VECTOR
#define TIMER_HZ 1000
#define TIMER_TICKS 10
/* Enough for TIMER_TICKS at 1 kHz on any TSC up to ~10 GHz, with margin. */
#define TIMER_WAIT_CYCLES 4000000000ull

struct check {
    const char *name;
    /* Returns true on success; on failure writes a reason into why. */
    bool (*run)(char *why, size_t why_size);
};

static const char *current_check;
/* Measured by the PIT check, used to turn later TSC readings into time. */
static uint64_t tsc_hz;

static __attribute__((format(printf, 1, 2))) void info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("selftest: %s: ", current_check);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
}

/* ---- cpuid ---- */

static bool check_cpuid(char *why, size_t why_size)
{
    struct cpuid_regs r = cpuid(0, 0);
    uint32_t max_leaf = r.eax;
    char vendor[13];
    memcpy(vendor + 0, &r.ebx, 4);
    memcpy(vendor + 4, &r.edx, 4);
    memcpy(vendor + 8, &r.ecx, 4);
    vendor[12] = '\0';

    uint32_t max_ext = cpuid(0x80000000, 0).eax;
    info("vendor %s, max leaf 0x%x, max extended leaf 0x%x", vendor, max_leaf, max_ext);

    if (strcmp(vendor, "GenuineIntel") != 0 && strcmp(vendor, "AuthenticAMD") != 0 &&
        strcmp(vendor, "HygonGenuine") != 0) {
        snprintf(why, why_size, "unexpected vendor '%s'", vendor);
        return false;
    }
    if (max_leaf < 1) {
        snprintf(why, why_size, "leaf 1 missing");
        return false;
    }
    if (!(cpuid(1, 0).edx & (1u << 26))) {
        snprintf(why, why_size, "SSE2 not reported (leaf 1 edx bit 26)");
        return false;
    }
    if (max_ext < 0x80000001) {
        snprintf(why, why_size, "leaf 0x80000001 missing");
        return false;
    }
    if (!(cpuid(0x80000001, 0).edx & (1u << 29))) {
        snprintf(why, why_size, "long mode not reported (leaf 0x80000001 edx bit 29)");
        return false;
    }
    return true;
}

/* ---- PIT counter ---- */

static bool check_pit_counter(char *why, size_t why_size)
{
    unsigned divisor = (PIT_HZ + TIMER_HZ / 2) / TIMER_HZ;
    pit_start_periodic(TIMER_HZ);

    /*
     * Each read is three port exits (~75 us), far from a whole period, so
     * two reads almost always differ; a few tries cover the unlucky case.
     */
    uint16_t first = pit_read_counter(), last = first;
    int tries = 0;
    while (last == first && tries++ < 8)
        last = pit_read_counter();
    info("counter 0x%04x then 0x%04x (reload value 0x%04x)", first, last, divisor);

    if (first > divisor || last > divisor) {
        snprintf(why, why_size, "counter above the reload value 0x%x", divisor);
        return false;
    }
    if (last == first) {
        snprintf(why, why_size, "counter stuck at 0x%x", first);
        return false;
    }
    return true;
}

/* ---- PIT interrupts through the IOAPIC ---- */

static bool check_pit_irq(char *why, size_t why_size)
{
    if (ioapic_pins() <= PIT_IOAPIC_PIN) {
        snprintf(why, why_size, "IOAPIC has only %u pins", ioapic_pins());
        return false;
    }

    lapic_enable();
    uint64_t base = irq_count(TIMER_VECTOR);
    pit_start_periodic(TIMER_HZ);
    ioapic_route(PIT_IOAPIC_PIN, TIMER_VECTOR, (uint8_t)lapic_id());

    /* Time TIMER_TICKS whole periods, from one interrupt to another. */
    bool first = irq_wait(TIMER_VECTOR, base + 1, TIMER_WAIT_CYCLES);
    uint64_t t0 = rdtsc();
    bool all = first && irq_wait(TIMER_VECTOR, base + 1 + TIMER_TICKS, TIMER_WAIT_CYCLES);
    uint64_t t1 = rdtsc();

    ioapic_mask(PIT_IOAPIC_PIN);
    pit_stop();

    uint64_t got = irq_count(TIMER_VECTOR) - base;
    if (!first) {
        /*
         * Tell a routing mistake from a dead timer: without the IRQ0 -> pin 2
         * override (QEMU's microvm with kernel-irqchip=on does this), the
         * PIT lands on pin 0.
         */
        ioapic_route(0, TIMER_VECTOR, (uint8_t)lapic_id());
        pit_start_periodic(TIMER_HZ);
        bool on_pin0 = irq_wait(TIMER_VECTOR, base + 1, TIMER_WAIT_CYCLES / 4);
        ioapic_mask(0);
        pit_stop();
        snprintf(why, why_size, "no interrupt on vector 0x%x from IOAPIC pin %u%s", TIMER_VECTOR,
                 PIT_IOAPIC_PIN, on_pin0 ? "; the PIT interrupts on pin 0 instead" : " nor pin 0");
        return false;
    }
    if (!all) {
        snprintf(why, why_size, "only %llu of %u interrupts arrived",
                 (unsigned long long)got, TIMER_TICKS + 1);
        return false;
    }

    unsigned divisor = (PIT_HZ + TIMER_HZ / 2) / TIMER_HZ;
    tsc_hz = (t1 - t0) * PIT_HZ / ((uint64_t)TIMER_TICKS * divisor);
    info("%llu interrupts on vector 0x%x; %u periods took %llu TSC cycles (TSC ~%llu MHz)",
         (unsigned long long)got, TIMER_VECTOR, TIMER_TICKS, (unsigned long long)(t1 - t0),
         (unsigned long long)(tsc_hz / 1000000));
    return true;
}

/* ---- guest memory ---- */

static uint64_t page_round_down(uint64_t a)
{
    return a & ~(PAGE_SIZE - 1);
}

static uint64_t page_round_up(uint64_t a)
{
    return (a + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
}

/* The image and the boot data we read are not ours to scribble on. */
static bool page_excluded(uint64_t page)
{
    uint64_t start = page_round_down((uintptr_t)__image_start);
    uint64_t end = page_round_up((uintptr_t)__image_end);
    if (page >= start && page < end)
        return true;
    for (uint32_t i = 0; i < boot_info.source_count; i++) {
        const struct phys_range *r = &boot_info.sources[i];
        if (page >= page_round_down(r->start) && page < page_round_up(r->end))
            return true;
    }
    return false;
}

/* Values differ per page, so two guest pages backed by one host page show up. */
static uint64_t pattern_head(uint64_t page)
{
    return page ^ 0x6d616c7600000000ull;
}

static uint64_t pattern_tail(uint64_t page)
{
    return ~page * 0x9e3779b97f4a7c15ull;
}

/* Calls fn on every testable page of usable RAM; returns the page count. */
static uint64_t for_each_test_page(bool (*fn)(uint64_t page, void *ctx), void *ctx)
{
    uint64_t pages = 0;
    for (uint32_t i = 0; i < boot_info.memmap_count; i++) {
        const struct hvm_memmap_table_entry *e = &boot_info.memmap[i];
        if (e->type != HVM_MEMMAP_TYPE_RAM || e->addr >= IDENTITY_MAP_END)
            continue;
        uint64_t end = e->size > IDENTITY_MAP_END - e->addr ? IDENTITY_MAP_END : e->addr + e->size;
        for (uint64_t page = page_round_up(e->addr); page + PAGE_SIZE <= end; page += PAGE_SIZE) {
            if (page_excluded(page))
                continue;
            pages++;
            if (!fn(page, ctx))
                return pages;
        }
    }
    return pages;
}

static bool write_page(uint64_t page, void *ctx)
{
    (void)ctx;
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)page;
    p[0] = pattern_head(page);
    p[PAGE_SIZE / 8 - 1] = pattern_tail(page);
    return true;
}

struct verify {
    uint64_t bad;
    uint64_t first_bad_addr, expected, found;
};

static bool verify_page(uint64_t page, void *ctx)
{
    struct verify *v = ctx;
    volatile uint64_t *p = (volatile uint64_t *)(uintptr_t)page;
    uint64_t head = p[0], tail = p[PAGE_SIZE / 8 - 1];
    bool head_ok = head == pattern_head(page);
    if (head_ok && tail == pattern_tail(page))
        return true;
    if (v->bad++ == 0) {
        v->first_bad_addr = head_ok ? page + PAGE_SIZE - 8 : page;
        v->expected = head_ok ? pattern_tail(page) : pattern_head(page);
        v->found = head_ok ? tail : head;
    }
    return true;
}

static bool check_memory(char *why, size_t why_size)
{
    uint64_t t0 = rdtsc();
    uint64_t pages = for_each_test_page(write_page, NULL);
    struct verify v = { 0 };
    for_each_test_page(verify_page, &v);
    uint64_t cycles = rdtsc() - t0;

    if (pages == 0) {
        snprintf(why, why_size, "no usable RAM outside the image");
        return false;
    }
    if (tsc_hz)
        info("%llu pages (%llu MiB) written and verified in %llu ms",
             (unsigned long long)pages, (unsigned long long)(pages * PAGE_SIZE >> 20),
             (unsigned long long)(cycles * 1000 / tsc_hz));
    else
        info("%llu pages (%llu MiB) written and verified in %llu TSC cycles",
             (unsigned long long)pages, (unsigned long long)(pages * PAGE_SIZE >> 20),
             (unsigned long long)cycles);
    if (v.bad) {
        snprintf(why, why_size, "%llu bad pages; first at 0x%llx: expected 0x%016llx, found 0x%016llx",
                 (unsigned long long)v.bad, (unsigned long long)v.first_bad_addr,
                 (unsigned long long)v.expected, (unsigned long long)v.found);
        return false;
    }
    return true;
}

static const struct check checks[] = {
    { "cpuid", check_cpuid },
    { "pit-counter", check_pit_counter },
    { "pit-irq", check_pit_irq },
    { "memory", check_memory },
};

int test_selftest(void)
{
    unsigned passed = 0, failed = 0;
    for (unsigned i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        char why[160] = "";
        current_check = checks[i].name;
        if (checks[i].run(why, sizeof why)) {
            printf("selftest: %s ... ok\n", checks[i].name);
            passed++;
        } else {
            printf("selftest: %s ... FAIL (%s)\n", checks[i].name, why);
            failed++;
        }
    }
    printf("selftest: %u passed, %u failed\n", passed, failed);
    return failed ? EXIT_FAILED : EXIT_OK;
}
