#include "malv/memory.h"

#include <stdbool.h>

#include "malv/bootinfo.h"
#include "malv/paging.h"
#include "malv/string.h"

static uint64_t next, limit;
static bool initialised;

/*
 * Picks the largest usable range below 4 GiB that lies above the image. The
 * start_info data was copied by bootinfo_init; ACPI tables live in reserved or
 * ACPI ranges on every VMM we know, and are read (acpi.c) before anything is
 * allocated anyway.
 */
static void init(void)
{
    initialised = true;
    uint64_t floor = ((uintptr_t)__image_end + 4095) & ~4095ull;
    for (uint32_t i = 0; i < boot_info.memmap_count; i++) {
        const struct hvm_memmap_table_entry *e = &boot_info.memmap[i];
        if (e->type != HVM_MEMMAP_TYPE_RAM || e->size == 0 || e->addr + e->size < e->addr)
            continue;
        uint64_t start = e->addr < floor ? floor : e->addr;
        uint64_t end = e->addr + e->size;
        if (end > IDENTITY_MAP_LIMIT)
            end = IDENTITY_MAP_LIMIT;
        if (start < end && end - start > limit - next) {
            next = start;
            limit = end;
        }
    }
}

void *dma_alloc(size_t size, size_t align)
{
    if (!initialised)
        init();
    if (align == 0 || (align & (align - 1)))
        return NULL;
    uint64_t start = (next + align - 1) & ~((uint64_t)align - 1);
    if (start < next || start > limit || size > limit - start)
        return NULL;
    next = start + size;
    void *p = (void *)(uintptr_t)start;
    memset(p, 0, size);
    return p;
}

uint64_t dma_available(void)
{
    if (!initialised)
        init();
    return limit - next;
}
