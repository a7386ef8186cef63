#include "malv/virtio.h"

#include "malv/intr.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/x86.h"

/* virtio_pci_cap (§4.1.4) */
#define CAP_LEN         2
#define CAP_CFG_TYPE    3
#define CAP_BAR         4
#define CAP_OFFSET      8
#define CAP_LENGTH      12
#define CAP_NOTIFY_MULT 16
#define CAP_MIN_LEN     16
#define CAP_NOTIFY_MIN_LEN 20

#define CFG_COMMON  1
#define CFG_NOTIFY  2
#define CFG_ISR     3
#define CFG_DEVICE  4

/* virtio_pci_common_cfg (§4.1.4.3) */
#define COMMON_DFSELECT     0x00
#define COMMON_DF           0x04
#define COMMON_GFSELECT     0x08
#define COMMON_GF           0x0c
#define COMMON_MSIX         0x10
#define COMMON_NUMQ         0x12
#define COMMON_STATUS       0x14
#define COMMON_CFGGEN       0x15
#define COMMON_Q_SELECT     0x16
#define COMMON_Q_SIZE       0x18
#define COMMON_Q_MSIX       0x1a
#define COMMON_Q_ENABLE     0x1c
#define COMMON_Q_NOFF       0x1e
#define COMMON_Q_DESC       0x20
#define COMMON_Q_AVAIL      0x28
#define COMMON_Q_USED       0x30
#define COMMON_MIN_LEN      0x38    /* virtio 1.0's layout; 1.2 adds two fields we don't use */

/* Config space is small; a larger claim is a device bug we need not honour. */
#define DEVICE_CFG_MAX 4096
#define RESET_MAX_POLLS 100000
#define CFG_GEN_RETRIES 8

/* ---- common config accessors: all plain MMIO ---- */

static uint8_t c_read8(struct virtio_pci *vp, unsigned off) { return vp->common[off]; }
static uint16_t c_read16(struct virtio_pci *vp, unsigned off) { return *(volatile uint16_t *)(vp->common + off); }
static uint32_t c_read32(struct virtio_pci *vp, unsigned off) { return *(volatile uint32_t *)(vp->common + off); }
static void c_write8(struct virtio_pci *vp, unsigned off, uint8_t v) { vp->common[off] = v; }
static void c_write16(struct virtio_pci *vp, unsigned off, uint16_t v) { *(volatile uint16_t *)(vp->common + off) = v; }
static void c_write32(struct virtio_pci *vp, unsigned off, uint32_t v) { *(volatile uint32_t *)(vp->common + off) = v; }

/* 64-bit fields as two 32-bit writes, low half first: every device must take that (§4.1.3.1). */
static void c_write64(struct virtio_pci *vp, unsigned off, uint64_t v)
{
    c_write32(vp, off, (uint32_t)v);
    c_write32(vp, off + 4, (uint32_t)(v >> 32));
}

static void full_barrier(void)
{
    __asm__ volatile("mfence" : : : "memory");
}

/* ---- discovery ---- */

const struct pci_function *virtio_pci_find(uint16_t type, unsigned nth)
{
    for (unsigned i = 0; i < pci.count; i++) {
        const struct pci_function *f = &pci.fns[i];
        if (f->vendor == VIRTIO_PCI_VENDOR && f->device == VIRTIO_PCI_MODERN_DEVICE_BASE + type &&
            nth-- == 0)
            return f;
    }
    return NULL;
}

const char *virtio_pci_probe(struct virtio_pci *vp, const struct pci_function *f)
{
    memset(vp, 0, sizeof *vp);
    vp->fn = f;
    if (f->vendor != VIRTIO_PCI_VENDOR || f->device < VIRTIO_PCI_MODERN_DEVICE_BASE ||
        f->device > VIRTIO_PCI_MODERN_DEVICE_BASE + 0x3f)
        return "not a modern virtio-pci function";
    vp->type = f->device - VIRTIO_PCI_MODERN_DEVICE_BASE;

    /* The first usable capability of each type wins (§4.1.4: "SHOULD use the first"). */
    for (unsigned i = 0; i < f->cap_count; i++) {
        if (f->caps[i].id != PCI_CAP_VENDOR)
            continue;
        unsigned off = f->caps[i].offset;
        uint8_t cap_len = pci_read8(f, off + CAP_LEN);
        uint8_t type = pci_read8(f, off + CAP_CFG_TYPE);
        uint8_t bar = pci_read8(f, off + CAP_BAR);
        uint32_t offset = pci_read32(f, off + CAP_OFFSET);
        uint32_t length = pci_read32(f, off + CAP_LENGTH);
        /* Too short, a reserved BAR number, or past the config space: ignore it. */
        if (cap_len < CAP_MIN_LEN || off + cap_len > 256 || bar > 5)
            continue;
        switch (type) {
        case CFG_COMMON:
            if (!vp->common && length >= COMMON_MIN_LEN)
                vp->common = pci_bar_map(f, bar, offset, COMMON_MIN_LEN);
            break;
        case CFG_NOTIFY:
            if (!vp->notify_base && cap_len >= CAP_NOTIFY_MIN_LEN && length >= 2) {
                vp->notify_base = pci_bar_map(f, bar, offset, length);
                vp->notify_len = length;
                vp->notify_mult = pci_read32(f, off + CAP_NOTIFY_MULT);
            }
            break;
        case CFG_ISR:
            if (!vp->isr && length >= 1)
                vp->isr = pci_bar_map(f, bar, offset, 1);
            break;
        case CFG_DEVICE:
            if (!vp->device && length > 0) {
                vp->device_len = length < DEVICE_CFG_MAX ? length : DEVICE_CFG_MAX;
                vp->device = pci_bar_map(f, bar, offset, vp->device_len);
            }
            break;
        default:
            break;  /* PCI cfg access, shared memory, vendor: not needed */
        }
    }
    if (!vp->common)
        return "no usable common config capability (memory BAR, >= 0x38 bytes)";
    if (!vp->notify_base)
        return "no usable notify capability";
    /* ISR is only for INTx, which we never use; device config is checked per field. */
    if (!vp->device)
        vp->device_len = 0;
    pci_enable(f);
    return NULL;
}

/* ---- status and reset ---- */

uint8_t virtio_pci_status(struct virtio_pci *vp)
{
    return c_read8(vp, COMMON_STATUS);
}

bool virtio_pci_needs_reset(struct virtio_pci *vp)
{
    uint8_t s = virtio_pci_status(vp);
    if (s & VIRTIO_STATUS_NEEDS_RESET) {
        vp->broken = "device set DEVICE_NEEDS_RESET";
        return true;
    }
    return false;
}

bool virtio_pci_reset(struct virtio_pci *vp)
{
    c_write8(vp, COMMON_STATUS, 0);
    /* §4.1.4.3.2: the reset is done when status reads back 0. */
    for (unsigned i = 0; i < RESET_MAX_POLLS; i++) {
        if (c_read8(vp, COMMON_STATUS) == 0)
            return true;
        cpu_relax();
    }
    return false;
}

static void add_status(struct virtio_pci *vp, uint8_t bits)
{
    c_write8(vp, COMMON_STATUS, c_read8(vp, COMMON_STATUS) | bits);
}

static const char *fail(struct virtio_pci *vp, const char *why)
{
    add_status(vp, VIRTIO_STATUS_FAILED);
    return why;
}

const char *virtio_pci_negotiate(struct virtio_pci *vp, uint64_t wanted, uint64_t required)
{
    if (!virtio_pci_reset(vp))
        return "device did not finish reset (status never read 0)";
    add_status(vp, VIRTIO_STATUS_ACKNOWLEDGE);
    add_status(vp, VIRTIO_STATUS_DRIVER);

    c_write32(vp, COMMON_DFSELECT, 0);
    uint64_t lo = c_read32(vp, COMMON_DF);
    c_write32(vp, COMMON_DFSELECT, 1);
    uint64_t hi = c_read32(vp, COMMON_DF);
    vp->device_features = hi << 32 | lo;
    vp->num_queues = c_read16(vp, COMMON_NUMQ);

    required |= VIRTIO_BIT(VIRTIO_F_VERSION_1);
    if (!(vp->device_features & VIRTIO_BIT(VIRTIO_F_VERSION_1)))
        return fail(vp, "device does not offer VERSION_1 (legacy only)");
    if ((vp->device_features & required) != required)
        return fail(vp, "device lacks a required feature");
    vp->features = (vp->device_features & wanted) | required;

    c_write32(vp, COMMON_GFSELECT, 0);
    c_write32(vp, COMMON_GF, (uint32_t)vp->features);
    c_write32(vp, COMMON_GFSELECT, 1);
    c_write32(vp, COMMON_GF, (uint32_t)(vp->features >> 32));
    add_status(vp, VIRTIO_STATUS_FEATURES_OK);
    /* §3.1.1 step 6: the device clears FEATURES_OK if it rejects the subset. */
    if (!(c_read8(vp, COMMON_STATUS) & VIRTIO_STATUS_FEATURES_OK))
        return fail(vp, "device rejected our features (FEATURES_OK cleared)");
    return NULL;
}

void virtio_pci_driver_ok(struct virtio_pci *vp)
{
    add_status(vp, VIRTIO_STATUS_DRIVER_OK);
}

/* ---- MSI-X ---- */

bool virtio_pci_msix_route(struct virtio_pci *vp, uint16_t entry, uint8_t vector)
{
    return vp->msix_ready && pci_msix_set(&vp->msix, entry, vector, (uint8_t)lapic_id());
}

const char *virtio_pci_msix_setup(struct virtio_pci *vp, uint16_t config_entry, uint8_t config_vector)
{
    if (!vp->msix_ready) {
        const char *why = pci_msix_init(vp->fn, &vp->msix);
        if (why)
            return why;
        vp->msix_ready = true;
    }
    lapic_enable();
    if (config_entry != VIRTIO_NO_VECTOR && !virtio_pci_msix_route(vp, config_entry, config_vector))
        return "config MSI-X entry beyond the table";
    pci_msix_enable(&vp->msix, true);
    c_write16(vp, COMMON_MSIX, config_entry);
    /* A device that cannot use the vector answers NO_VECTOR (§4.1.5.1.2). */
    if (c_read16(vp, COMMON_MSIX) != config_entry)
        return "device refused the config MSI-X vector";
    return NULL;
}

/* ---- queues ---- */

static volatile uint16_t *used_event(struct virtq *vq)
{
    return &vq->avail->ring[vq->size];
}

static volatile uint16_t *avail_event(struct virtq *vq)
{
    return (volatile uint16_t *)&vq->used->ring[vq->size];
}

const char *virtio_pci_setup_queue(struct virtio_pci *vp, struct virtq *vq, uint16_t index,
                                   uint16_t max_size, uint16_t msix_entry)
{
    /* Ring memory survives a re-setup of the same struct (resets between test phases). */
    void *old_mem = vq->desc;
    struct virtq_desc *old_ind = vq->indirect_tables;
    memset(vq, 0, sizeof *vq);

    if (index >= vp->num_queues)
        return "queue index beyond num_queues";
    c_write16(vp, COMMON_Q_SELECT, index);
    uint16_t dev_max = c_read16(vp, COMMON_Q_SIZE);
    if (dev_max == 0)
        return "queue not available (size 0)";
    if (c_read16(vp, COMMON_Q_ENABLE) != 0)
        return "queue already enabled after reset";
    uint16_t size = 1;
    while (size * 2 <= dev_max && size * 2 <= max_size && size * 2 <= VIRTQ_MAX_SIZE)
        size *= 2;
    if (size < 2)
        return "queue too small";

    vq->index = index;
    vq->size = size;
    vq->event_idx = vp->features & VIRTIO_BIT(VIRTIO_F_EVENT_IDX);
    vq->indirect = vp->features & VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);

    /* Descriptors, avail and used ring on their own pages (well over the 16/2/4 alignment). */
    uint8_t *mem = old_mem ? old_mem : dma_alloc(3 * 4096, 4096);
    if (!mem)
        return "out of DMA memory for the ring";
    memset(mem, 0, 3 * 4096);
    vq->desc = (struct virtq_desc *)mem;
    vq->avail = (volatile struct virtq_avail *)(mem + 4096);
    vq->used = (volatile struct virtq_used *)(mem + 8192);
    if (vq->indirect) {
        vq->indirect_tables = old_ind ? old_ind
                                      : dma_alloc(sizeof(struct virtq_desc) * VIRTQ_MAX_SEGS * VIRTQ_MAX_SIZE, 16);
        if (!vq->indirect_tables)
            return "out of DMA memory for indirect tables";
    }

    vq->free_head = 0;
    vq->num_free = size;
    for (uint16_t i = 0; i < size; i++)
        vq->chain_next[i] = (uint16_t)(i + 1);

    c_write16(vp, COMMON_Q_SIZE, size);
    c_write64(vp, COMMON_Q_DESC, virt_to_phys(vq->desc));
    c_write64(vp, COMMON_Q_AVAIL, virt_to_phys((const void *)vq->avail));
    c_write64(vp, COMMON_Q_USED, virt_to_phys((const void *)vq->used));

    vq->interrupts = msix_entry != VIRTIO_NO_VECTOR;
    c_write16(vp, COMMON_Q_MSIX, msix_entry);
    vq->vector = c_read16(vp, COMMON_Q_MSIX);
    if (vq->vector != msix_entry)
        return "device refused the queue MSI-X vector";
    if (!vq->interrupts) {
        vq->avail->flags = VIRTQ_AVAIL_F_NO_INTERRUPT;
        if (vq->event_idx)
            *used_event(vq) = 0x8000;   /* far from any index we will reach soon */
    }

    uint16_t notify_off = c_read16(vp, COMMON_Q_NOFF);
    uint64_t at = (uint64_t)notify_off * vp->notify_mult;
    if (at + 2 > vp->notify_len)
        return "queue notify address outside the notify capability";
    vq->notify = (volatile uint16_t *)(vp->notify_base + at);

    c_write16(vp, COMMON_Q_ENABLE, 1);
    return NULL;
}

/* ---- config space ---- */

static bool cfg_field(struct virtio_pci *vp, unsigned off, unsigned size)
{
    return vp->device && off + size <= vp->device_len && off % size == 0;
}

bool virtio_cfg_read8(struct virtio_pci *vp, unsigned off, uint8_t *v)
{
    if (!cfg_field(vp, off, 1))
        return false;
    *v = vp->device[off];
    return true;
}

bool virtio_cfg_read16(struct virtio_pci *vp, unsigned off, uint16_t *v)
{
    if (!cfg_field(vp, off, 2))
        return false;
    *v = *(volatile uint16_t *)(vp->device + off);
    return true;
}

bool virtio_cfg_read32(struct virtio_pci *vp, unsigned off, uint32_t *v)
{
    if (!cfg_field(vp, off, 4))
        return false;
    *v = *(volatile uint32_t *)(vp->device + off);
    return true;
}

bool virtio_cfg_read64(struct virtio_pci *vp, unsigned off, uint64_t *v)
{
    if (!cfg_field(vp, off, 8))
        return false;
    for (unsigned i = 0; i < CFG_GEN_RETRIES; i++) {
        uint8_t gen = c_read8(vp, COMMON_CFGGEN);
        uint32_t lo = *(volatile uint32_t *)(vp->device + off);
        uint32_t hi = *(volatile uint32_t *)(vp->device + off + 4);
        if (c_read8(vp, COMMON_CFGGEN) == gen) {
            *v = (uint64_t)hi << 32 | lo;
            return true;
        }
    }
    vp->broken = "config_generation never settled";
    return false;
}

/* ---- split virtqueue ---- */

int virtq_add(struct virtq *vq, const struct virtq_buf *bufs, unsigned n, uint32_t token, bool indirect)
{
    if (vq->broken || n == 0 || n > VIRTQ_MAX_SEGS || n > vq->size)
        return -1;
    bool use_indirect = indirect && vq->indirect && n > 1;
    uint16_t need = use_indirect ? 1 : (uint16_t)n;
    if (vq->num_free < need)
        return -1;

    uint16_t head = vq->free_head;
    uint64_t writable = 0;
    for (unsigned i = 0; i < n; i++)
        if (bufs[i].device_writes)
            writable += bufs[i].len;

    if (use_indirect) {
        struct virtq_desc *table = vq->indirect_tables + (uint32_t)head * VIRTQ_MAX_SEGS;
        for (unsigned i = 0; i < n; i++)
            table[i] = (struct virtq_desc){
                .addr = bufs[i].addr,
                .len = bufs[i].len,
                .flags = (uint16_t)((bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) |
                                    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                .next = (uint16_t)(i + 1 < n ? i + 1 : 0),
            };
        vq->desc[head] = (struct virtq_desc){
            .addr = virt_to_phys(table),
            .len = (uint32_t)(n * sizeof *table),
            .flags = VIRTQ_DESC_F_INDIRECT,
        };
        vq->free_head = vq->chain_next[head];
    } else {
        uint16_t d = head;
        for (unsigned i = 0; i < n; i++) {
            vq->desc[d] = (struct virtq_desc){
                .addr = bufs[i].addr,
                .len = bufs[i].len,
                .flags = (uint16_t)((bufs[i].device_writes ? VIRTQ_DESC_F_WRITE : 0) |
                                    (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0)),
                .next = i + 1 < n ? vq->chain_next[d] : 0,
            };
            d = vq->chain_next[d];
        }
        vq->free_head = d;
    }
    vq->num_free -= need;
    vq->chain_len[head] = need;
    vq->writable[head] = writable > UINT32_MAX ? UINT32_MAX : (uint32_t)writable;
    vq->token[head] = token;

    vq->avail->ring[vq->avail_idx % vq->size] = head;
    /* x86 keeps stores in order; the compiler must too: ring entry before idx. */
    compiler_barrier();
    vq->avail_idx++;
    vq->avail->idx = vq->avail_idx;
    vq->added++;
    return head;
}

void virtq_kick(struct virtq *vq)
{
    /* The idx store must be visible before we read the device's suppression state. */
    full_barrier();
    uint16_t old = vq->kicked_idx, now = vq->avail_idx;
    vq->kicked_idx = now;
    if (old == now || vq->broken)
        return;
    bool notify;
    if (vq->event_idx) {
        uint16_t ev = *avail_event(vq);
        notify = (uint16_t)(now - ev - 1) < (uint16_t)(now - old);
    } else {
        notify = !(vq->used->flags & VIRTQ_USED_F_NO_NOTIFY);
    }
    if (notify) {
        *vq->notify = vq->index;
        vq->notifies++;
    }
}

bool virtq_has_used(struct virtq *vq)
{
    return vq->used->idx != vq->last_used;
}

static void free_chain(struct virtq *vq, uint16_t head)
{
    uint16_t n = vq->chain_len[head], tail = head;
    for (uint16_t i = 1; i < n; i++)
        tail = vq->chain_next[tail];
    vq->chain_next[tail] = vq->free_head;
    vq->free_head = head;
    vq->num_free += n;
    vq->chain_len[head] = 0;
}

bool virtq_get_used(struct virtq *vq, uint32_t *token, uint32_t *len)
{
    if (vq->broken)
        return false;
    uint16_t idx = vq->used->idx;
    if (idx == vq->last_used)
        return false;
    uint16_t in_flight = (uint16_t)(vq->added - vq->completed);
    if ((uint16_t)(idx - vq->last_used) > in_flight) {
        vq->broken = "used idx ran ahead of what we made available";
        return false;
    }
    /* Loads are ordered on x86; keep the compiler from hoisting the entry above idx. */
    compiler_barrier();
    volatile struct virtq_used_elem *e = &vq->used->ring[vq->last_used % vq->size];
    uint32_t id = e->id, written = e->len;
    if (id >= vq->size || vq->chain_len[id] == 0) {
        vq->broken = "used id is not a request in flight";
        return false;
    }
    if (written > vq->writable[id]) {
        vq->broken = "used len larger than the writable buffers";
        return false;
    }
    *token = vq->token[id];
    *len = written;
    free_chain(vq, (uint16_t)id);
    vq->last_used++;
    vq->completed++;
    if (vq->event_idx && !vq->interrupts)
        *used_event(vq) = (uint16_t)(vq->last_used + 0x8000);
    return true;
}

void virtq_arm(struct virtq *vq)
{
    if (vq->event_idx)
        *used_event(vq) = vq->last_used;
    else
        vq->avail->flags = 0;
    full_barrier();
}

/* ---- names ---- */

const char *virtio_type_name(uint16_t type)
{
    switch (type) {
    case 1: return "virtio-net";
    case 2: return "virtio-blk";
    case 3: return "virtio-console";
    case 4: return "virtio-rng";
    case 5: return "virtio-balloon";
    case 8: return "virtio-scsi";
    case 9: return "virtio-9p";
    case 16: return "virtio-gpu";
    case 18: return "virtio-input";
    case 19: return "virtio-vsock";
    case 26: return "virtio-fs";
    default: return "virtio";
    }
}

const char *virtio_transport_feature_name(unsigned bit)
{
    switch (bit) {
    case 24: return "NOTIFY_ON_EMPTY";
    case 27: return "ANY_LAYOUT";
    case VIRTIO_F_INDIRECT_DESC: return "INDIRECT_DESC";
    case VIRTIO_F_EVENT_IDX: return "EVENT_IDX";
    case VIRTIO_F_VERSION_1: return "VERSION_1";
    case VIRTIO_F_ACCESS_PLATFORM: return "ACCESS_PLATFORM";
    case VIRTIO_F_RING_PACKED: return "RING_PACKED";
    case 35: return "IN_ORDER";
    case 36: return "ORDER_PLATFORM";
    case 37: return "SR_IOV";
    case 38: return "NOTIFICATION_DATA";
    case 39: return "NOTIF_CONFIG_DATA";
    case 40: return "RING_RESET";
    default: return NULL;
    }
}
