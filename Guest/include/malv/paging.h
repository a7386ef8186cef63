/*
 * Mapping physical ranges above 4 GiB on demand. boot/tables.S identity-maps
 * 0-4 GiB; a VMM may place 64-bit BARs (or ECAM) higher, in a window above
 * RAM. The page tables are user-accessible data, so ring 3 extends them
 * itself: it only ever fills entries that were not present, which needs no
 * TLB flush (the CPU caches no translation for a not-present entry), and
 * never changes a present one (that would need invlpg, a ring-0 instruction).
 */
#ifndef MALV_PAGING_H
#define MALV_PAGING_H

#include <stdint.h>

#define IDENTITY_MAP_LIMIT (1ull << 32)

/* Spare page-table pages kept in .bss for phys_map. Each 1 GiB touched above
 * 4 GiB costs a page directory; each 512 GiB a PDPT as well. */
#define PAGING_SPARE_PAGES 8

/*
 * Makes [paddr, paddr + size) accessible, uncached (PCD|PWT) when above
 * 4 GiB, in 2 MiB pages, and returns its virtual address. Ranges below
 * 4 GiB are already mapped and come back unchanged. Above, the mapping is
 * identity (virtual == physical) while that is a canonical address (below
 * 2^47); higher physical addresses (QEMU microvm's 64-bit PCIe window is the
 * top quarter of the physical address space) are mapped in a window at
 * HIGH_ALIAS_BASE instead, so use the returned pointer, not paddr. Returns
 * NULL if the range is empty, wraps, lies beyond the CPU's physical address
 * width, collides with an earlier mapping, or the spare pages run out.
 */
void *phys_map(uint64_t paddr, uint64_t size);

/* Virtual window for physical ranges at or above 2^47: 1 TiB below the canonical limit. */
#define HIGH_ALIAS_BASE 0x7f0000000000ull
#define HIGH_ALIAS_END  0x800000000000ull

/* Spare page-table pages still available (for reports). */
unsigned paging_spare_left(void);

#endif
