/*
 * What the VMM told us at boot, copied out of hvm_start_info into the image
 * so tests may overwrite any RAM (the start_info page included) afterwards.
 */
#ifndef MALV_BOOTINFO_H
#define MALV_BOOTINFO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "malv/pvh.h"

#define BOOT_CMDLINE_MAX 1024
#define BOOT_MEMMAP_MAX 128

/* A physical range [start, end) the firmware handed us data in. */
struct phys_range {
    uint64_t start, end;
};

struct boot_info {
    uint64_t start_info_paddr;
    struct hvm_start_info start_info;   /* as found, version 0 fields zeroed */

    char cmdline[BOOT_CMDLINE_MAX];
    bool cmdline_truncated;

    struct hvm_memmap_table_entry memmap[BOOT_MEMMAP_MAX];
    uint32_t memmap_count;              /* entries copied */

    /* Where start_info, the command line and the memory map were. */
    struct phys_range sources[3];
    uint32_t source_count;
};

extern struct boot_info boot_info;

/* Image bounds, from linker.ld. */
extern char __image_start[], __image_end[];

/* Returns NULL on success, else why start_info cannot be used. */
const char *bootinfo_init(uint64_t start_info_paddr);

const char *memmap_type_name(uint32_t type);

/*
 * Looks up `key=value` among the space-separated words of the command line.
 * Copies the value (possibly empty) and returns true if the key is there.
 */
bool cmdline_get(const char *key, char *value, size_t size);
/* KEY=N with 0 < N < 2^31, else `fallback` (absent or malformed alike). */
uint32_t cmdline_u32(const char *key, uint32_t fallback);

#endif
