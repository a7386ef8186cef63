/*
 * Memory for device DMA: a bump allocator over usable RAM below 4 GiB above
 * the image (identity mapped, so virtual == guest-physical == DMA address:
 * there is no IOMMU). Nothing is ever freed; tests allocate once.
 * The image must fit in 2 MiB of RAM, so large buffers come from here rather
 * than from .bss.
 */
#ifndef MALV_MEMORY_H
#define MALV_MEMORY_H

#include <stddef.h>
#include <stdint.h>

/* Zeroed memory aligned to `align` (a power of two), or NULL. */
void *dma_alloc(size_t size, size_t align);

/* Bytes still available to dma_alloc. */
uint64_t dma_available(void);

static inline uint64_t virt_to_phys(const void *p)
{
    return (uint64_t)(uintptr_t)p;
}

#endif
