#include "malv/virtio_blk.h"

#include "malv/intr.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/x86.h"

/* virtio_blk_config offsets (§5.2.4) */
#define CFG_CAPACITY        0
#define CFG_SIZE_MAX        8
#define CFG_SEG_MAX         12
#define CFG_BLK_SIZE        20
#define CFG_MAX_DISCARD_SECTORS 36
#define CFG_MAX_DISCARD_SEG 40
#define CFG_MAX_WZ_SECTORS  48
#define CFG_MAX_WZ_SEG      52

/* Slot memory layout: header (16), range for discard/write-zeroes (16), status (1). */
#define SLOT_HDR    0
#define SLOT_RANGE  16
#define SLOT_STATUS 32
#define SLOT_BYTES  64

/* Generous: a request on a loaded host should not take seconds. */
#define DEFAULT_TIMEOUT_CYCLES 50000000000ull

struct __attribute__((packed)) blk_req_hdr {
    uint32_t type;
    uint32_t reserved;
    uint64_t sector;
};

struct __attribute__((packed)) blk_range {
    uint64_t sector;
    uint32_t num_sectors;
    uint32_t flags;
};

bool blk_has(const struct blk_dev *b, unsigned feature)
{
    return b->vp.features & VIRTIO_BIT(feature);
}

const char *blk_error(struct blk_dev *b)
{
    return b->vp.broken ? b->vp.broken : b->vq.broken;
}

static const char *read_config(struct blk_dev *b)
{
    struct virtio_pci *vp = &b->vp;
    if (!virtio_cfg_read64(vp, CFG_CAPACITY, &b->capacity))
        return "device config too short for capacity";
    /* Fields of features we did not get are not valid; fields we got must be there. */
    b->blk_size = BLK_SECTOR;
    if (blk_has(b, VIRTIO_BLK_F_BLK_SIZE) && !virtio_cfg_read32(vp, CFG_BLK_SIZE, &b->blk_size))
        return "device config too short for blk_size";
    if (blk_has(b, VIRTIO_BLK_F_SEG_MAX) && !virtio_cfg_read32(vp, CFG_SEG_MAX, &b->seg_max))
        return "device config too short for seg_max";
    if (blk_has(b, VIRTIO_BLK_F_SIZE_MAX) && !virtio_cfg_read32(vp, CFG_SIZE_MAX, &b->size_max))
        return "device config too short for size_max";
    if (blk_has(b, VIRTIO_BLK_F_DISCARD) &&
        (!virtio_cfg_read32(vp, CFG_MAX_DISCARD_SECTORS, &b->max_discard_sectors) ||
         !virtio_cfg_read32(vp, CFG_MAX_DISCARD_SEG, &b->max_discard_seg)))
        return "device config too short for discard limits";
    if (blk_has(b, VIRTIO_BLK_F_WRITE_ZEROES) &&
        (!virtio_cfg_read32(vp, CFG_MAX_WZ_SECTORS, &b->max_wz_sectors) ||
         !virtio_cfg_read32(vp, CFG_MAX_WZ_SEG, &b->max_wz_seg)))
        return "device config too short for write-zeroes limits";
    if (b->blk_size < BLK_SECTOR || (b->blk_size & (b->blk_size - 1)) || b->blk_size > 65536)
        return "blk_size not a power of two in 512..65536";
    b->read_only = blk_has(b, VIRTIO_BLK_F_RO);
    return NULL;
}

const char *blk_open(struct blk_dev *b, unsigned nth, uint64_t optional, bool msix, uint8_t vector)
{
    uint8_t *slot_mem = b->slot_mem;  /* kept across re-opens of the same device */
    memset(&b->vp, 0, sizeof b->vp);
    b->capacity = 0;
    b->seg_max = b->size_max = 0;
    b->max_discard_sectors = b->max_discard_seg = b->max_wz_sectors = b->max_wz_seg = 0;
    memset(b->slots, 0, sizeof b->slots);
    b->inflight = 0;
    b->irq = msix;
    b->vector = vector;
    b->irq_base = irq_count(vector);
    b->timeout_cycles = DEFAULT_TIMEOUT_CYCLES;

    const struct pci_function *f = virtio_pci_find(VIRTIO_TYPE_BLOCK, nth);
    if (!f)
        return "no virtio-blk (1af4:1042) found";
    const char *why = virtio_pci_probe(&b->vp, f);
    if (!why)
        why = virtio_pci_negotiate(&b->vp, BLK_FEATURES_BASE | (optional & BLK_FEATURES_OPTIONAL), 0);
    if (!why)
        why = read_config(b);
    if (why)
        return why;

    uint16_t queue_entry = VIRTIO_NO_VECTOR;
    if (msix) {
        /* Entry 0 for config changes, 1 for the queue; a one-entry table gets the queue only. */
        why = pci_msix_init(f, &b->vp.msix);
        if (why)
            return why;
        b->vp.msix_ready = true;
        bool two = b->vp.msix.entries >= 2;
        why = virtio_pci_msix_setup(&b->vp, two ? 0 : VIRTIO_NO_VECTOR, (uint8_t)(vector + 1));
        if (why)
            return why;
        queue_entry = two ? 1 : 0;
        if (!virtio_pci_msix_route(&b->vp, queue_entry, vector))
            return "cannot program the queue's MSI-X entry";
    }
    why = virtio_pci_setup_queue(&b->vp, &b->vq, 0, VIRTQ_MAX_SIZE, queue_entry);
    if (why)
        return why;

    b->slot_mem = slot_mem ? slot_mem : dma_alloc(BLK_MAX_INFLIGHT * SLOT_BYTES, 64);
    if (!b->slot_mem)
        return "out of DMA memory for request headers";
    virtio_pci_driver_ok(&b->vp);
    if (virtio_pci_needs_reset(&b->vp))
        return b->vp.broken;
    return NULL;
}

static uint8_t *slot_ptr(struct blk_dev *b, unsigned slot, unsigned off)
{
    return b->slot_mem + slot * SLOT_BYTES + off;
}

int blk_submit(struct blk_dev *b, const struct blk_io *io)
{
    if (blk_error(b))
        return -2;
    unsigned slot = 0;
    while (slot < BLK_MAX_INFLIGHT && b->slots[slot].busy)
        slot++;
    if (slot == BLK_MAX_INFLIGHT)
        return -1;

    struct virtq_buf bufs[VIRTQ_MAX_SEGS];
    unsigned n = 0;
    struct blk_req_hdr *hdr = (void *)slot_ptr(b, slot, SLOT_HDR);
    *hdr = (struct blk_req_hdr){ .type = io->type, .sector = io->sector };
    bufs[n++] = (struct virtq_buf){ virt_to_phys(hdr), sizeof *hdr, false };

    switch (io->type) {
    case VIRTIO_BLK_T_IN:
    case VIRTIO_BLK_T_OUT: {
        if (io->bytes == 0 || io->bytes % BLK_SECTOR)
            return -2;
        uint32_t seg = io->seg_bytes ? io->seg_bytes : io->bytes;
        if (b->size_max && seg > b->size_max)
            seg = b->size_max;
        uint32_t segs = (io->bytes + seg - 1) / seg;
        /* Header and status take two of the ring's descriptors; seg_max counts data only. */
        if (segs > VIRTQ_MAX_SEGS - 2 || (b->seg_max && segs > b->seg_max))
            return -2;
        uint8_t *p = io->buf;
        for (uint32_t left = io->bytes; left; ) {
            uint32_t len = left < seg ? left : seg;
            bufs[n++] = (struct virtq_buf){ virt_to_phys(p), len, io->type == VIRTIO_BLK_T_IN };
            p += len;
            left -= len;
        }
        break;
    }
    case VIRTIO_BLK_T_GET_ID:
        bufs[n++] = (struct virtq_buf){ virt_to_phys(io->buf), BLK_ID_BYTES, true };
        break;
    case VIRTIO_BLK_T_DISCARD:
    case VIRTIO_BLK_T_WRITE_ZEROES: {
        struct blk_range *r = (void *)slot_ptr(b, slot, SLOT_RANGE);
        *r = (struct blk_range){ .sector = io->sector, .num_sectors = io->bytes / BLK_SECTOR };
        hdr->sector = 0;
        bufs[n++] = (struct virtq_buf){ virt_to_phys(r), sizeof *r, false };
        break;
    }
    case VIRTIO_BLK_T_FLUSH:
        hdr->sector = 0;
        break;
    default:
        break;  /* anything else: header and status only, the device should say UNSUPP */
    }

    uint8_t *status = slot_ptr(b, slot, SLOT_STATUS);
    *status = BLK_STATUS_NOT_WRITTEN;
    bufs[n++] = (struct virtq_buf){ virt_to_phys(status), 1, true };

    if (virtq_add(&b->vq, bufs, n, slot, io->indirect) < 0)
        return b->vq.broken ? -2 : -1;
    b->slots[slot] = (struct blk_slot){ .busy = true, .tag = io->tag };
    b->inflight++;
    return (int)slot;
}

void blk_kick(struct blk_dev *b)
{
    virtq_kick(&b->vq);
}

static bool timed_out(struct blk_dev *b, uint64_t start, uint64_t *spins)
{
    if (++*spins > 4000000000ull)
        return true;
    return rdtsc() - start > b->timeout_cycles;
}

/* Waits until the used ring has something: spinning on it, or on the interrupt counter. */
static bool wait_used(struct blk_dev *b)
{
    uint64_t start = rdtsc(), spins = 0;
    if (!b->irq) {
        while (!virtq_has_used(&b->vq)) {
            if (timed_out(b, start, &spins))
                return false;
            cpu_relax();
        }
        return true;
    }
    /*
     * Snapshot the counter, re-arm, then look once more: a completion that
     * landed before the re-arm may not interrupt, and is taken here.
     */
    uint64_t seen = irq_count(b->vector);
    virtq_arm(&b->vq);
    if (virtq_has_used(&b->vq))
        return true;
    while (irq_count(b->vector) == seen) {
        if (timed_out(b, start, &spins))
            return false;
        cpu_relax();
    }
    return true;
}

uint64_t blk_interrupts(const struct blk_dev *b)
{
    return irq_count(b->vector) - b->irq_base;
}

int blk_complete(struct blk_dev *b, struct blk_done *done, unsigned max, bool wait)
{
    if (blk_error(b))
        return -1;
    if (wait && b->inflight && !virtq_has_used(&b->vq) && !wait_used(b)) {
        if (!virtio_pci_needs_reset(&b->vp))
            b->vq.broken = "timed out waiting for a completion";
        return -1;
    }
    unsigned n = 0;
    uint32_t token, len;
    while (n < max && virtq_get_used(&b->vq, &token, &len)) {
        if (token >= BLK_MAX_INFLIGHT || !b->slots[token].busy) {
            b->vq.broken = "completion for a slot not in flight";
            return -1;
        }
        if (len < 1) {
            /* The status byte is the last writable byte: a device must count it. */
            b->vq.broken = "used len 0: the device did not count the status byte";
            return -1;
        }
        done[n++] = (struct blk_done){ b->slots[token].tag, *slot_ptr(b, token, SLOT_STATUS), len };
        b->slots[token].busy = false;
        b->inflight--;
    }
    return b->vq.broken ? -1 : (int)n;
}

int blk_sync(struct blk_dev *b, const struct blk_io *io, uint32_t *used_len)
{
    if (blk_submit(b, io) < 0)
        return -1;
    blk_kick(b);
    struct blk_done d;
    int n;
    while ((n = blk_complete(b, &d, 1, true)) == 0)
        ;
    if (n < 0)
        return -1;
    if (used_len)
        *used_len = d.used_len;
    return d.status;
}

const char *blk_feature_name(unsigned bit)
{
    switch (bit) {
    case VIRTIO_BLK_F_SIZE_MAX: return "SIZE_MAX";
    case VIRTIO_BLK_F_SEG_MAX: return "SEG_MAX";
    case VIRTIO_BLK_F_GEOMETRY: return "GEOMETRY";
    case VIRTIO_BLK_F_RO: return "RO";
    case VIRTIO_BLK_F_BLK_SIZE: return "BLK_SIZE";
    case VIRTIO_BLK_F_FLUSH: return "FLUSH";
    case VIRTIO_BLK_F_TOPOLOGY: return "TOPOLOGY";
    case VIRTIO_BLK_F_CONFIG_WCE: return "CONFIG_WCE";
    case VIRTIO_BLK_F_MQ: return "MQ";
    case VIRTIO_BLK_F_DISCARD: return "DISCARD";
    case VIRTIO_BLK_F_WRITE_ZEROES: return "WRITE_ZEROES";
    default: return virtio_transport_feature_name(bit);
    }
}
