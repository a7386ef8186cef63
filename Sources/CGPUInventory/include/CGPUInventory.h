#ifndef MALVVM_CGPUINVENTORY_H
#define MALVVM_CGPUINVENTORY_H

#include <stddef.h>
#include <stdint.h>

// Flat C views of libdrm and libpci results for GPUInventory. The work is done in C because
// drmDevice is all unions and DRM_NODE_* indices, pci_lookup_name is variadic, and libpci's
// fatal-error callback must longjmp (its default handler calls exit()).

typedef struct {
    char primary[64];
    char render[64];
    char driver[64];
    int is_pci;
    uint16_t domain;
    uint8_t bus, dev, func;
    uint16_t vendor_id, device_id;
} malv_drm_device;

/// Fills up to `max` devices; returns how many, or a negative errno.
int malv_drm_list(malv_drm_device *out, int max);
int malv_drm_available(void);

typedef struct {
    uint16_t domain;
    uint8_t bus, dev, func;
    uint16_t vendor_id, device_id;
    uint16_t device_class;
    char vendor_name[128];
    char device_name[256];
} malv_pci_device;

/// Lists PCI devices whose class byte is `class_prefix` (0x03: display controllers).
/// Returns the count found (only `max` are filled), or -1 with a message in `error`.
/// `total` receives the number of PCI devices scanned.
int malv_pci_list(uint8_t class_prefix, malv_pci_device *out, int max, int *total, char *error, size_t error_size);

#endif
