/*
 * The PVH boot structures, as laid out by Xen's
 * xen/include/public/arch-x86/hvm/start_info.h (our own declarations).
 */
#ifndef MALV_PVH_H
#define MALV_PVH_H

#include <stdint.h>

#define HVM_START_MAGIC_VALUE 0x336ec578

struct hvm_start_info {
    uint32_t magic;
    uint32_t version;           /* 1 adds memmap_paddr/memmap_entries */
    uint32_t flags;
    uint32_t nr_modules;
    uint64_t modlist_paddr;
    uint64_t cmdline_paddr;     /* NUL-terminated; 0 if none */
    uint64_t rsdp_paddr;
    uint64_t memmap_paddr;
    uint32_t memmap_entries;
    uint32_t reserved;
};

struct hvm_memmap_table_entry {
    uint64_t addr;
    uint64_t size;
    uint32_t type;
    uint32_t reserved;
};

/* Memory map types; the same numbers as the e820 types. */
#define HVM_MEMMAP_TYPE_RAM         1
#define HVM_MEMMAP_TYPE_RESERVED    2
#define HVM_MEMMAP_TYPE_ACPI        3
#define HVM_MEMMAP_TYPE_NVS         4
#define HVM_MEMMAP_TYPE_UNUSABLE    5
#define HVM_MEMMAP_TYPE_DISABLED    6
#define HVM_MEMMAP_TYPE_PMEM        7

#endif
