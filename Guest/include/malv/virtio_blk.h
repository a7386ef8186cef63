/*
 * virtio-blk (§5.2) on the virtio-pci transport: one request queue, up to
 * BLK_MAX_INFLIGHT requests in flight, completions polled from the used ring
 * or taken after an MSI-X interrupt.
 */
#ifndef MALV_VIRTIO_BLK_H
#define MALV_VIRTIO_BLK_H

#include <stdbool.h>
#include <stdint.h>

#include "malv/virtio.h"

#define VIRTIO_TYPE_BLOCK 2

/* Feature bits (§5.2.3) */
#define VIRTIO_BLK_F_SIZE_MAX       1
#define VIRTIO_BLK_F_SEG_MAX        2
#define VIRTIO_BLK_F_GEOMETRY       4
#define VIRTIO_BLK_F_RO             5
#define VIRTIO_BLK_F_BLK_SIZE       6
#define VIRTIO_BLK_F_FLUSH          9
#define VIRTIO_BLK_F_TOPOLOGY       10
#define VIRTIO_BLK_F_CONFIG_WCE     11
#define VIRTIO_BLK_F_MQ             12
#define VIRTIO_BLK_F_DISCARD        13
#define VIRTIO_BLK_F_WRITE_ZEROES   14

/* Request types and status (§5.2.6) */
#define VIRTIO_BLK_T_IN             0
#define VIRTIO_BLK_T_OUT            1
#define VIRTIO_BLK_T_FLUSH          4
#define VIRTIO_BLK_T_GET_ID         8
#define VIRTIO_BLK_T_DISCARD        11
#define VIRTIO_BLK_T_WRITE_ZEROES   13
#define VIRTIO_BLK_S_OK             0
#define VIRTIO_BLK_S_IOERR          1
#define VIRTIO_BLK_S_UNSUPP         2
#define BLK_STATUS_NOT_WRITTEN      0xff    /* our marker: the device never wrote it */

#define BLK_SECTOR 512u
#define BLK_ID_BYTES 20
#define BLK_MAX_INFLIGHT 32

/*
 * What we ask for. The base set is what every VMM we test is expected to
 * offer (RO only for read-only disks); test=blk prints it on a line of its
 * own. The optional set is taken when offered and printed apart, so that a
 * comparison between VMMs can mask it.
 */
#define BLK_FEATURES_BASE                                                                        \
    (VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_BLK_F_SEG_MAX) |                        \
     VIRTIO_BIT(VIRTIO_BLK_F_RO) | VIRTIO_BIT(VIRTIO_BLK_F_BLK_SIZE) |                          \
     VIRTIO_BIT(VIRTIO_BLK_F_FLUSH))
#define BLK_FEATURES_OPTIONAL                                                                    \
    (VIRTIO_BIT(VIRTIO_BLK_F_SIZE_MAX) | VIRTIO_BIT(VIRTIO_F_EVENT_IDX) |                       \
     VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC) | VIRTIO_BIT(VIRTIO_BLK_F_DISCARD) |                    \
     VIRTIO_BIT(VIRTIO_BLK_F_WRITE_ZEROES))

struct blk_io {
    uint32_t type;          /* VIRTIO_BLK_T_* */
    uint64_t sector;        /* IN, OUT; for DISCARD/WRITE_ZEROES the range start */
    void *buf;              /* IN, OUT, GET_ID: identity-mapped DMA memory */
    uint32_t bytes;         /* IN, OUT: multiple of 512; DISCARD/WRITE_ZEROES: range length */
    uint32_t seg_bytes;     /* split data into segments of this size (0: as few as allowed) */
    bool indirect;          /* use an indirect table when the feature was negotiated */
    uint64_t tag;           /* handed back on completion */
};

struct blk_done {
    uint64_t tag;
    uint8_t status;
    uint32_t used_len;
};

struct blk_slot {
    bool busy;
    uint64_t tag;
};

struct blk_dev {
    struct virtio_pci vp;
    struct virtq vq;
    uint64_t capacity;          /* in 512-byte sectors */
    uint32_t blk_size;          /* 512 unless BLK_SIZE says otherwise */
    uint32_t seg_max, size_max; /* 0 = no limit given */
    uint32_t max_discard_sectors, max_discard_seg, max_wz_sectors, max_wz_seg;
    bool read_only;
    bool irq;                   /* completions by MSI-X */
    uint8_t vector;             /* the queue's interrupt vector */
    uint64_t irq_base;          /* the vector's interrupt count at blk_open */
    uint64_t timeout_cycles;
    struct blk_slot slots[BLK_MAX_INFLIGHT];
    unsigned inflight;
    /* Per slot: request header, discard/write-zeroes range, status byte (DMA memory). */
    uint8_t *slot_mem;
};

/*
 * Finds the nth virtio-blk, negotiates BLK_FEATURES_BASE plus `optional`,
 * reads its config and starts queue 0. With `msix`, completions interrupt
 * on `vector` (the config vector is vector + 1). NULL on success.
 */
const char *blk_open(struct blk_dev *b, unsigned nth, uint64_t optional, bool msix, uint8_t vector);

bool blk_has(const struct blk_dev *b, unsigned feature);

/* Queues a request: slot index, -1 if the queue is full, -2 if the request is invalid. */
int blk_submit(struct blk_dev *b, const struct blk_io *io);
void blk_kick(struct blk_dev *b);

/*
 * Collects up to `max` completions. With `wait`, blocks (bounded) until at
 * least one arrives. Returns the count, or -1 if the device broke a rule or
 * timed out (b->vp.broken / b->vq.broken say why).
 */
int blk_complete(struct blk_dev *b, struct blk_done *done, unsigned max, bool wait);

/* Submits one request, waits for it; returns its status byte, or -1. */
int blk_sync(struct blk_dev *b, const struct blk_io *io, uint32_t *used_len);

/* Why the device or queue is unusable, or NULL. */
const char *blk_error(struct blk_dev *b);

/*
 * Interrupts delivered on the queue's vector since blk_open, whichever way
 * blk_complete found the completions (a completion already in the used ring
 * is taken without waiting, but its interrupt still arrives).
 */
uint64_t blk_interrupts(const struct blk_dev *b);

const char *blk_feature_name(unsigned bit);

#endif
