#include "malv/pit.h"

#include "malv/x86.h"

#define PIT_CH0     0x40
#define PIT_CMD     0x43
/* Command bits: channel 0, access lobyte/hibyte, binary. */
#define PIT_CMD_CH0_LOHI    0x30
#define PIT_MODE_ONESHOT    (0 << 1)
#define PIT_MODE_RATE       (2 << 1)
#define PIT_CMD_LATCH_CH0   0x00

static void pit_load(uint8_t mode, uint16_t count)
{
    outb(PIT_CMD, PIT_CMD_CH0_LOHI | mode);
    outb(PIT_CH0, count & 0xff);
    outb(PIT_CH0, count >> 8);
}

void pit_start_periodic(unsigned hz)
{
    uint32_t divisor = (PIT_HZ + hz / 2) / hz;
    if (divisor < 2)
        divisor = 2;
    if (divisor > 0xffff)
        divisor = 0; /* 0 means 65536 */
    pit_load(PIT_MODE_RATE, (uint16_t)divisor);
}

void pit_stop(void)
{
    /*
     * A mode-0 count fires once and stops; a periodic PIT left behind keeps
     * the VMM's (or KVM's) timer firing even while its IOAPIC pin is masked.
     */
    pit_load(PIT_MODE_ONESHOT, 0xffff);
}

uint16_t pit_read_counter(void)
{
    outb(PIT_CMD, PIT_CMD_LATCH_CH0);
    uint8_t lo = inb(PIT_CH0);
    uint8_t hi = inb(PIT_CH0);
    return (uint16_t)(hi << 8 | lo);
}
