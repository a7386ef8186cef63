#include "malv/system.h"

#include "malv/console.h"
#include "malv/layout.h"
#include "malv/x86.h"

void guest_halt(void)
{
    /* boot/trap.c recognises the magic and halts with interrupts off. */
    __asm__ volatile("int3" : : "a"(SYS_HALT_MAGIC) : "memory");
    for (;;)
        cpu_relax();
}

void guest_exit(uint32_t code)
{
    console_flush();
    outl(EXIT_PORT, code);
    /* Only reached if the VMM has no exit device. */
    guest_halt();
}
