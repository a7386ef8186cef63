#include "malv/console.h"
#include "malv/test.h"

/* Spins in ring 3 until the VMM ends the VM: lets the host test its stop paths (signals,
 * the control API) against a guest that never exits by itself. */
int test_idle(void)
{
    printf("idle: running until the VMM stops this guest\n");
    console_flush();
    for (;;)
        __asm__ volatile("pause");
}
