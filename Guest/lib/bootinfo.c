#include "malv/bootinfo.h"

#include "malv/string.h"

struct boot_info boot_info;

/* Everything we dereference must lie in the 4 GiB identity map. */
#define MAPPED_LIMIT (1ull << 32)

static bool mapped(uint64_t paddr, uint64_t size)
{
    return paddr != 0 && paddr < MAPPED_LIMIT && size <= MAPPED_LIMIT - paddr;
}

static void note_source(uint64_t paddr, uint64_t size)
{
    boot_info.sources[boot_info.source_count++] = (struct phys_range){ paddr, paddr + size };
}

const char *bootinfo_init(uint64_t paddr)
{
    struct boot_info *bi = &boot_info;
    bi->start_info_paddr = paddr;

    if (!mapped(paddr, sizeof(struct hvm_start_info)))
        return "start_info address outside the identity map";
    const struct hvm_start_info *si = (const void *)(uintptr_t)paddr;
    if (si->magic != HVM_START_MAGIC_VALUE)
        return "bad start_info magic";

    /* Version 0 ends before memmap_paddr; don't read what isn't there. */
    size_t si_size = si->version >= 1 ? sizeof *si : offsetof(struct hvm_start_info, memmap_paddr);
    memcpy(&bi->start_info, si, si_size);
    note_source(paddr, si_size);

    if (si->cmdline_paddr) {
        if (!mapped(si->cmdline_paddr, 1))
            return "command line outside the identity map";
        const char *cmdline = (const char *)(uintptr_t)si->cmdline_paddr;
        size_t len = strnlen(cmdline, BOOT_CMDLINE_MAX);
        bi->cmdline_truncated = len == BOOT_CMDLINE_MAX;
        if (bi->cmdline_truncated)
            len--;
        memcpy(bi->cmdline, cmdline, len);
        bi->cmdline[len] = '\0';
        note_source(si->cmdline_paddr, len + 1);
    }

    if (bi->start_info.version >= 1 && si->memmap_entries > 0) {
        uint64_t bytes = (uint64_t)si->memmap_entries * sizeof(struct hvm_memmap_table_entry);
        if (!mapped(si->memmap_paddr, bytes))
            return "memory map outside the identity map";
        bi->memmap_count = si->memmap_entries < BOOT_MEMMAP_MAX ? si->memmap_entries : BOOT_MEMMAP_MAX;
        memcpy(bi->memmap, (const void *)(uintptr_t)si->memmap_paddr,
               bi->memmap_count * sizeof(struct hvm_memmap_table_entry));
        note_source(si->memmap_paddr, bytes);
    }
    return NULL;
}

const char *memmap_type_name(uint32_t type)
{
    switch (type) {
    case HVM_MEMMAP_TYPE_RAM: return "usable";
    case HVM_MEMMAP_TYPE_RESERVED: return "reserved";
    case HVM_MEMMAP_TYPE_ACPI: return "ACPI data";
    case HVM_MEMMAP_TYPE_NVS: return "ACPI NVS";
    case HVM_MEMMAP_TYPE_UNUSABLE: return "unusable";
    case HVM_MEMMAP_TYPE_DISABLED: return "disabled";
    case HVM_MEMMAP_TYPE_PMEM: return "persistent";
    default: return "unknown";
    }
}

bool cmdline_get(const char *key, char *value, size_t size)
{
    size_t key_len = strlen(key);
    const char *p = boot_info.cmdline;

    while (*p) {
        while (*p == ' ')
            p++;
        const char *word = p;
        while (*p && *p != ' ')
            p++;
        size_t word_len = (size_t)(p - word);
        if (word_len > key_len && word[key_len] == '=' && strncmp(word, key, key_len) == 0) {
            size_t n = word_len - key_len - 1;
            if (size > 0) {
                if (n > size - 1)
                    n = size - 1;
                memcpy(value, word + key_len + 1, n);
                value[n] = '\0';
            }
            return true;
        }
    }
    return false;
}

uint32_t cmdline_u32(const char *key, uint32_t fallback)
{
    char text[24] = "";
    uint64_t v;
    if (cmdline_get(key, text, sizeof text) && parse_u64(text, &v, NULL) && v > 0 && v < (1u << 31))
        return (uint32_t)v;
    return fallback;
}
