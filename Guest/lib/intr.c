#include "malv/intr.h"

#include "malv/layout.h"
#include "malv/x86.h"

volatile uint64_t irq_counts[256];

#define LAPIC_ID    0x20
#define LAPIC_TPR   0x80
#define LAPIC_SVR   0xf0
#define LAPIC_SVR_ENABLE (1u << 8)
#define LAPIC_LVT_LINT0 0x350
#define LAPIC_LVT_MASKED (1u << 16)
#define LAPIC_LVT_TIMER 0x320
#define LAPIC_TIMER_INITIAL 0x380
#define LAPIC_TIMER_DIVIDE 0x3e0
#define LAPIC_DIVIDE_BY_16 0x3

#define IOAPIC_REGSEL   0x00
#define IOAPIC_WINDOW   0x10
#define IOAPIC_VER      0x01
#define IOAPIC_REDTBL(pin) (0x10 + 2 * (pin))
#define IOAPIC_MASKED   (1u << 16)

static uint32_t lapic_read(uint32_t reg)
{
    return mmio_read32(LAPIC_BASE + reg);
}

static void lapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(LAPIC_BASE + reg, v);
}

void lapic_enable(void)
{
    /*
     * All IRQs come through the IOAPIC. QEMU resets the BSP's LINT0 to
     * ExtINT, malvvm leaves it masked: mask it so both behave alike.
     */
    lapic_write(LAPIC_LVT_LINT0, LAPIC_LVT_MASKED);
    lapic_write(LAPIC_TPR, 0);
    lapic_write(LAPIC_SVR, LAPIC_SVR_ENABLE | SPURIOUS_VECTOR);
}

uint32_t lapic_id(void)
{
    return lapic_read(LAPIC_ID) >> 24;
}

void lapic_timer_oneshot(uint8_t vector, uint32_t count)
{
    /* LVT mode bits 18:17 = 0: one-shot; writing the initial count starts it (0 stops it). */
    lapic_write(LAPIC_TIMER_DIVIDE, LAPIC_DIVIDE_BY_16);
    lapic_write(LAPIC_LVT_TIMER, vector);
    lapic_write(LAPIC_TIMER_INITIAL, count);
}

/* Select-then-access; safe because no interrupt handler touches the IOAPIC. */
static uint32_t ioapic_read(uint32_t reg)
{
    mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
    return mmio_read32(IOAPIC_BASE + IOAPIC_WINDOW);
}

static void ioapic_write(uint32_t reg, uint32_t v)
{
    mmio_write32(IOAPIC_BASE + IOAPIC_REGSEL, reg);
    mmio_write32(IOAPIC_BASE + IOAPIC_WINDOW, v);
}

unsigned ioapic_pins(void)
{
    return ((ioapic_read(IOAPIC_VER) >> 16) & 0xff) + 1;
}

void ioapic_route(unsigned pin, uint8_t vector, uint8_t apic_id)
{
    /* Destination first, so the entry is complete when it unmasks. */
    ioapic_write(IOAPIC_REDTBL(pin) + 1, (uint32_t)apic_id << 24);
    ioapic_write(IOAPIC_REDTBL(pin), vector);
}

void ioapic_mask(unsigned pin)
{
    ioapic_write(IOAPIC_REDTBL(pin), IOAPIC_MASKED);
}

bool irq_wait(unsigned vector, uint64_t target, uint64_t max_cycles)
{
    /* ~1e9 pause instructions is tens of seconds at most on any x86. */
    const uint64_t max_spins = 1000000000ull;
    uint64_t start = rdtsc();
    for (uint64_t spins = 0; spins < max_spins; spins++) {
        if (irq_count(vector) >= target)
            return true;
        if (rdtsc() - start > max_cycles)
            break;
        cpu_relax();
    }
    return irq_count(vector) >= target;
}
