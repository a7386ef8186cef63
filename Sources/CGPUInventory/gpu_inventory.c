#include "CGPUInventory.h"

#include <fcntl.h>
#include <pci/pci.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xf86drm.h>

static void malv_drm_copy(char *dst, size_t size, const char *src) {
    if (src) { snprintf(dst, size, "%s", src); } else { dst[0] = 0; }
}

int malv_drm_list(malv_drm_device *out, int max) {
    drmDevicePtr devices[64];
    int limit = max < 64 ? max : 64;
    int count = drmGetDevices2(0, devices, limit);
    if (count <= 0) return count;
    for (int i = 0; i < count; i++) {
        drmDevicePtr d = devices[i];
        malv_drm_device *o = &out[i];
        memset(o, 0, sizeof *o);
        if (d->available_nodes & (1 << DRM_NODE_PRIMARY)) malv_drm_copy(o->primary, sizeof o->primary, d->nodes[DRM_NODE_PRIMARY]);
        if (d->available_nodes & (1 << DRM_NODE_RENDER)) malv_drm_copy(o->render, sizeof o->render, d->nodes[DRM_NODE_RENDER]);
        if (d->bustype == DRM_BUS_PCI && d->businfo.pci) {
            o->is_pci = 1;
            o->domain = d->businfo.pci->domain;
            o->bus = d->businfo.pci->bus;
            o->dev = d->businfo.pci->dev;
            o->func = d->businfo.pci->func;
            if (d->deviceinfo.pci) {
                o->vendor_id = d->deviceinfo.pci->vendor_id;
                o->device_id = d->deviceinfo.pci->device_id;
            }
        }
        // The kernel driver's name, from whichever node we may open.
        const char *node = o->render[0] ? o->render : (o->primary[0] ? o->primary : NULL);
        if (node) {
            int fd = open(node, O_RDWR | O_CLOEXEC);
            if (fd >= 0) {
                drmVersionPtr version = drmGetVersion(fd);
                if (version) {
                    malv_drm_copy(o->driver, sizeof o->driver, version->name);
                    drmFreeVersion(version);
                }
                close(fd);
            }
        }
    }
    drmFreeDevices(devices, count);
    return count;
}

int malv_drm_available(void) { return drmAvailable(); }


static inline jmp_buf *malv_pci_jump(void) { static __thread jmp_buf jump; return &jump; }
static inline char *malv_pci_message(void) { static __thread char message[256]; return message; }

__attribute__((noreturn)) static void malv_pci_error(char *msg, ...) {
    va_list args;
    va_start(args, msg);
    vsnprintf(malv_pci_message(), 256, msg, args);
    va_end(args);
    longjmp(*malv_pci_jump(), 1);
}

static void malv_pci_quiet(char *msg, ...) { (void)msg; }

int malv_pci_list(uint8_t class_prefix, malv_pci_device *out, int max, int *total,
                                char *error, size_t error_size) {
    struct pci_access *volatile access = pci_alloc();
    volatile int found = 0;
    *total = 0;
    if (!access) {
        snprintf(error, error_size, "pci_alloc failed");
        return -1;
    }
    access->error = malv_pci_error;
    access->warning = malv_pci_quiet;
    access->debug = malv_pci_quiet;
    if (setjmp(*malv_pci_jump())) {
        snprintf(error, error_size, "%s", malv_pci_message());
        // libpci's state after a failed init is unknown; leaking one pci_access on this
        // rare path is safer than cleaning it up.
        return -1;
    }
    pci_init(access);
    pci_scan_bus(access);
    for (struct pci_dev *d = access->devices; d; d = d->next) {
        (*total)++;
        pci_fill_info(d, PCI_FILL_IDENT | PCI_FILL_CLASS);
        if ((d->device_class >> 8) != class_prefix) continue;
        if (found < max) {
            malv_pci_device *o = &out[found];
            memset(o, 0, sizeof *o);
            o->domain = (uint16_t)d->domain;
            o->bus = d->bus;
            o->dev = d->dev;
            o->func = d->func;
            o->vendor_id = d->vendor_id;
            o->device_id = d->device_id;
            o->device_class = d->device_class;
            char buffer[256];
            if (pci_lookup_name(access, buffer, sizeof buffer, PCI_LOOKUP_VENDOR, d->vendor_id))
                snprintf(o->vendor_name, sizeof o->vendor_name, "%s", buffer);
            if (pci_lookup_name(access, buffer, sizeof buffer, PCI_LOOKUP_DEVICE, d->vendor_id, d->device_id))
                snprintf(o->device_name, sizeof o->device_name, "%s", buffer);
        }
        found++;
    }
    pci_cleanup(access);
    return found;
}

