/*
 * test=hello: what the guest was given at boot. The output is deterministic
 * (no timings, no host-dependent values) so that malvvm's and QEMU's runs of
 * the same ELF can be compared line by line.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/test.h"

int test_hello(void)
{
    const struct hvm_start_info *si = &boot_info.start_info;

    printf("malvguest: hello from ring 3 (PVH entry, x86-64 long mode)\n");
    printf("image: 0x%lx-0x%lx\n", (unsigned long)__image_start,
           (unsigned long)__image_end - 1);
    printf("start_info: version %u flags 0x%x modules %u rsdp 0x%llx\n", si->version, si->flags,
           si->nr_modules, (unsigned long long)si->rsdp_paddr);
    printf("cmdline: '%s'%s\n", boot_info.cmdline,
           boot_info.cmdline_truncated ? " (truncated)" : "");

    uint64_t usable = 0;
    printf("memory map: %u entries\n", si->memmap_entries);
    for (uint32_t i = 0; i < boot_info.memmap_count; i++) {
        const struct hvm_memmap_table_entry *e = &boot_info.memmap[i];
        char type[24];
        if (e->type >= HVM_MEMMAP_TYPE_RAM && e->type <= HVM_MEMMAP_TYPE_PMEM)
            snprintf(type, sizeof type, "%s", memmap_type_name(e->type));
        else
            snprintf(type, sizeof type, "type %u", e->type);
        /* Inclusive end, as Linux prints its e820 map; empty entries show as such. */
        if (e->size == 0)
            printf("  [%2u] 0x%016llx (empty)                     %s\n", i,
                   (unsigned long long)e->addr, type);
        else
            printf("  [%2u] 0x%016llx-0x%016llx size 0x%010llx %s\n", i,
                   (unsigned long long)e->addr, (unsigned long long)(e->addr + e->size - 1),
                   (unsigned long long)e->size, type);
        if (e->type == HVM_MEMMAP_TYPE_RAM)
            usable += e->size;
    }
    if (boot_info.memmap_count < si->memmap_entries)
        printf("  (only the first %u entries shown)\n", boot_info.memmap_count);
    printf("usable RAM: %llu KiB\n", (unsigned long long)(usable >> 10));
    printf("hello: ok\n");
    return 0;
}
