/*
 * virtio 1.2 over PCI, modern interface only (§4.1), with split virtqueues
 * (§2.7). Every device-supplied value (capability offsets and lengths,
 * queue sizes, used-ring indices, ids and lengths) is checked before use:
 * this driver is also how we test a VMM's devices, malformed ones included.
 * A device that breaks the rules marks itself `broken` with a reason.
 */
#ifndef MALV_VIRTIO_H
#define MALV_VIRTIO_H

#include <stdbool.h>
#include <stdint.h>

#include "malv/pci.h"

#define VIRTIO_PCI_VENDOR 0x1af4
#define VIRTIO_PCI_MODERN_DEVICE_BASE 0x1040    /* + virtio device type */

/* Device status (§2.1) */
#define VIRTIO_STATUS_ACKNOWLEDGE   1u
#define VIRTIO_STATUS_DRIVER        2u
#define VIRTIO_STATUS_DRIVER_OK     4u
#define VIRTIO_STATUS_FEATURES_OK   8u
#define VIRTIO_STATUS_NEEDS_RESET   64u
#define VIRTIO_STATUS_FAILED        128u

/* Transport feature bits (§6) */
#define VIRTIO_F_INDIRECT_DESC      28
#define VIRTIO_F_EVENT_IDX          29
#define VIRTIO_F_VERSION_1          32
#define VIRTIO_F_ACCESS_PLATFORM    33
#define VIRTIO_F_RING_PACKED        34

#define VIRTIO_BIT(b) (1ull << (b))

#define VIRTIO_NO_VECTOR 0xffff

/* Split virtqueue layout (§2.7) */
#define VIRTQ_DESC_F_NEXT       1
#define VIRTQ_DESC_F_WRITE      2
#define VIRTQ_DESC_F_INDIRECT   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1
#define VIRTQ_USED_F_NO_NOTIFY  1

struct virtq_desc {
    uint64_t addr;
    uint32_t len;
    uint16_t flags;
    uint16_t next;
};

struct virtq_avail {
    uint16_t flags;
    uint16_t idx;
    uint16_t ring[];    /* [size], then used_event with EVENT_IDX */
};

struct virtq_used_elem {
    uint32_t id;
    uint32_t len;
};

struct virtq_used {
    uint16_t flags;
    uint16_t idx;
    struct virtq_used_elem ring[];  /* [size], then avail_event with EVENT_IDX */
};

/* We never use more than this many descriptors per queue... */
#define VIRTQ_MAX_SIZE 256
/* ...nor more than this many buffers in one request (the indirect table size). */
#define VIRTQ_MAX_SEGS 64

/* One buffer of a request, in the order the device sees them. */
struct virtq_buf {
    uint64_t addr;
    uint32_t len;
    bool device_writes;
};

struct virtq {
    uint16_t index, size;
    struct virtq_desc *desc;
    volatile struct virtq_avail *avail;
    volatile struct virtq_used *used;
    volatile uint16_t *notify;      /* the queue's doorbell in the notify BAR */
    bool event_idx, indirect;       /* negotiated */
    bool interrupts;                /* ask for interrupts (MSI-X vector set) */
    uint16_t vector;                /* MSI-X entry the device accepted, or VIRTIO_NO_VECTOR */

    uint16_t free_head, num_free;
    uint16_t avail_idx;             /* our copy of avail->idx */
    uint16_t last_used;             /* next used-ring slot to consume */
    uint16_t kicked_idx;            /* avail_idx at the last notify decision */

    /* Driver-private state per head: the device cannot corrupt it. */
    uint16_t chain_next[VIRTQ_MAX_SIZE];    /* shadow of desc[].next */
    uint16_t chain_len[VIRTQ_MAX_SIZE];     /* descriptors in the chain; 0 = head not in flight */
    uint32_t writable[VIRTQ_MAX_SIZE];      /* bytes the device may write to the chain */
    uint32_t token[VIRTQ_MAX_SIZE];
    struct virtq_desc *indirect_tables;     /* VIRTQ_MAX_SEGS per head */

    uint64_t notifies;              /* doorbell writes */
    uint64_t added, completed;
    const char *broken;             /* set once the device misbehaved */
};

struct virtio_pci {
    const struct pci_function *fn;
    uint16_t type;                  /* virtio device type */
    volatile uint8_t *common;
    volatile uint8_t *isr;
    volatile uint8_t *device;       /* device-specific config */
    uint32_t device_len;
    volatile uint8_t *notify_base;
    uint32_t notify_len, notify_mult;
    uint16_t num_queues;
    uint64_t device_features, features;
    bool msix_ready;
    struct pci_msix msix;
    const char *broken;
};

/* Finds the modern virtio function of `type` (the nth one, from 0), or NULL. */
const struct pci_function *virtio_pci_find(uint16_t type, unsigned nth);

/* Maps the capabilities. NULL on success, else why the device cannot be used. */
const char *virtio_pci_probe(struct virtio_pci *vp, const struct pci_function *f);

/*
 * Reset, ACKNOWLEDGE, DRIVER, then features: takes `wanted` & offered, fails
 * if anything in `required` is missing (VERSION_1 is always required), sets
 * FEATURES_OK and checks the device kept it. NULL on success.
 */
const char *virtio_pci_negotiate(struct virtio_pci *vp, uint64_t wanted, uint64_t required);

/*
 * Sets up queue `index` with at most `max_size` entries (a power of two, at
 * most VIRTQ_MAX_SIZE). With `msix_entry` != VIRTIO_NO_VECTOR the queue
 * interrupts through that MSI-X entry (virtio_pci_msix_setup first); else
 * completions are polled. NULL on success.
 */
const char *virtio_pci_setup_queue(struct virtio_pci *vp, struct virtq *vq, uint16_t index,
                                   uint16_t max_size, uint16_t msix_entry);

/* Enables MSI-X and points config changes at `config_entry` (or NO_VECTOR). */
const char *virtio_pci_msix_setup(struct virtio_pci *vp, uint16_t config_entry, uint8_t config_vector);
/* Programs and unmasks one MSI-X entry. */
bool virtio_pci_msix_route(struct virtio_pci *vp, uint16_t entry, uint8_t vector);

void virtio_pci_driver_ok(struct virtio_pci *vp);
/* Writes 0 and waits (bounded) for the device to read back 0. */
bool virtio_pci_reset(struct virtio_pci *vp);
uint8_t virtio_pci_status(struct virtio_pci *vp);
/* True (and vp->broken set) if the device asks for a reset or has failed. */
bool virtio_pci_needs_reset(struct virtio_pci *vp);

/*
 * Device config reads, bounds-checked against the capability's length
 * (false if the field is not there). The 64-bit read retries on a changed
 * config_generation, as two 32-bit reads are not atomic.
 */
bool virtio_cfg_read8(struct virtio_pci *vp, unsigned off, uint8_t *v);
bool virtio_cfg_read16(struct virtio_pci *vp, unsigned off, uint16_t *v);
bool virtio_cfg_read32(struct virtio_pci *vp, unsigned off, uint32_t *v);
bool virtio_cfg_read64(struct virtio_pci *vp, unsigned off, uint64_t *v);

/*
 * Queues one request. Returns its head (>= 0) or -1 if there is no room
 * (num_free too low) or the queue is broken. With `indirect` (and the feature
 * negotiated) the buffers go in the head's indirect table and take one ring
 * descriptor. Nothing reaches the device until virtq_kick.
 */
int virtq_add(struct virtq *vq, const struct virtq_buf *bufs, unsigned n, uint32_t token, bool indirect);

/* Publishes what was added and rings the doorbell unless the device said not to. */
void virtq_kick(struct virtq *vq);

/*
 * Takes one completion off the used ring: its token and the length the device
 * reports writing. Returns false if there is none, or the device broke a rule
 * (then vq->broken says how).
 */
bool virtq_get_used(struct virtq *vq, uint32_t *token, uint32_t *len);

/* Whether the used ring holds something we have not taken yet. */
bool virtq_has_used(struct virtq *vq);

/* With interrupts: re-arm (EVENT_IDX: used_event = last_used) before waiting. */
void virtq_arm(struct virtq *vq);

const char *virtio_type_name(uint16_t type);
/* Name of a transport feature bit (>= 24), or NULL. */
const char *virtio_transport_feature_name(unsigned bit);

#endif
