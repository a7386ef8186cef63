#include "malv/virtio_gpu.h"

#include "malv/format.h"
#include "malv/intr.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/system.h"
#include "malv/x86.h"

/* virtio_gpu_config offsets (§5.7.4) */
#define CFG_EVENTS_READ     0
#define CFG_EVENTS_CLEAR    4
#define CFG_NUM_SCANOUTS    8
#define CFG_NUM_CAPSETS     12

#define SLOT_BYTES (VIRTIO_GPU_REQ_BYTES + VIRTIO_GPU_RESP_BYTES)
#define HDR_BYTES ((uint32_t)sizeof(struct virtio_gpu_ctrl_hdr))
#define CAPSET_BYTES ((uint32_t)sizeof(struct virtio_gpu_compute_capset))

/* A lavapipe pipeline build or a busy shared GPU may take a while; a lost response must not hang us. */
#define DEFAULT_TIMEOUT_CYCLES 300000000000ull

_Static_assert(sizeof(struct virtio_gpu_ctrl_hdr) == 24, "ctrl_hdr layout");
_Static_assert(sizeof(struct virtio_gpu_mem_entry) == 16, "mem_entry layout");
_Static_assert(sizeof(struct virtio_gpu_compute_capset) == 40, "capset layout");

_Static_assert(sizeof(struct virtio_gpu_req_ctx_create) == 96, "ctx_create layout");
_Static_assert(sizeof(struct virtio_gpu_req_create_blob) == 56, "create_blob layout");
_Static_assert(sizeof(struct virtio_gpu_req_transfer_3d) == 72, "transfer layout");
_Static_assert(sizeof(struct virtio_gpu_req_submit) == 32, "submit layout");

static uint8_t *req_area(struct virtio_gpu *g, unsigned slot)
{
    return g->slot_mem + (uint64_t)slot * SLOT_BYTES;
}

static uint8_t *resp_area(struct virtio_gpu *g, unsigned slot)
{
    return req_area(g, slot) + VIRTIO_GPU_REQ_BYTES;
}

static struct virtio_gpu_ctrl_hdr hdr(uint32_t type, uint32_t ctx_id)
{
    return (struct virtio_gpu_ctrl_hdr){ .type = type, .ctx_id = ctx_id };
}

const char *virtio_gpu_error(struct virtio_gpu *g)
{
    if (g->vp.broken)
        return g->vp.broken;
    if (g->ctrlq.broken)
        return g->ctrlq.broken;
    return g->broken;
}

/* ---- requests ---- */

/* A free slot, or -(status). */
static int free_slot(struct virtio_gpu *g)
{
    if (virtio_gpu_error(g))
        return -(int)VIRTIO_GPU_STATUS_TRANSPORT;
    unsigned slot = 0;
    while (slot < VIRTIO_GPU_SLOTS && g->slots[slot].busy)
        slot++;
    return slot == VIRTIO_GPU_SLOTS ? -(int)VIRTIO_GPU_STATUS_NO_SLOT : (int)slot;
}

/* Adds the chain under `slot`'s token and marks the slot in flight. */
static int queue_slot(struct virtio_gpu *g, unsigned slot, const struct virtq_buf *bufs, unsigned n,
                      const struct virtio_gpu_ctrl_hdr *req, uint32_t expect, uint32_t min_len)
{
    memset(resp_area(g, slot), 0, HDR_BYTES);
    if (virtq_add(&g->ctrlq, bufs, n, slot, true) < 0)
        return g->ctrlq.broken ? -(int)VIRTIO_GPU_STATUS_TRANSPORT : -(int)VIRTIO_GPU_STATUS_NO_SLOT;
    struct virtio_gpu_slot *s = &g->slots[slot];
    *s = (struct virtio_gpu_slot){ .busy = true, .expect = expect, .min_len = min_len };
    if (req)
        memcpy(&s->req, req, HDR_BYTES);
    g->inflight++;
    g->requests++;
    return (int)slot;
}

int virtio_gpu_send(struct virtio_gpu *g, const void *req, uint32_t req_len, const void *data,
                    uint32_t data_len, uint32_t expect, uint32_t min_len)
{
    if (req_len < HDR_BYTES || req_len > VIRTIO_GPU_REQ_BYTES || min_len > VIRTIO_GPU_RESP_BYTES ||
        (data_len && !data))
        return -(int)VIRTIO_GPU_STATUS_TOO_BIG;
    int slot = free_slot(g);
    if (slot < 0)
        return slot;
    uint8_t *rq = req_area(g, (unsigned)slot);
    memcpy(rq, req, req_len);
    struct virtq_buf bufs[3];
    unsigned n = 0;
    bufs[n++] = (struct virtq_buf){ virt_to_phys(rq), req_len, false };
    if (data_len)
        bufs[n++] = (struct virtq_buf){ virt_to_phys(data), data_len, false };
    bufs[n++] = (struct virtq_buf){ virt_to_phys(resp_area(g, (unsigned)slot)), VIRTIO_GPU_RESP_BYTES, true };
    return queue_slot(g, (unsigned)slot, bufs, n, req, expect, min_len);
}

int virtio_gpu_send_chain(struct virtio_gpu *g, const struct virtq_buf *bufs, unsigned n, uint32_t resp_room,
                          const struct virtio_gpu_ctrl_hdr *req, uint32_t expect, uint32_t min_len)
{
    if (n + 1 > VIRTQ_MAX_SEGS || resp_room > VIRTIO_GPU_RESP_BYTES || min_len > VIRTIO_GPU_RESP_BYTES)
        return -(int)VIRTIO_GPU_STATUS_TOO_BIG;
    int slot = free_slot(g);
    if (slot < 0)
        return slot;
    struct virtq_buf all[VIRTQ_MAX_SEGS];
    memcpy(all, bufs, n * sizeof *bufs);
    if (resp_room)
        all[n++] = (struct virtq_buf){ virt_to_phys(resp_area(g, (unsigned)slot)), resp_room, true };
    return queue_slot(g, (unsigned)slot, all, n, req, expect, min_len);
}

void virtio_gpu_kick(struct virtio_gpu *g)
{
    virtq_kick(&g->ctrlq);
}

/* Takes every completion off the used ring into its slot. False if the device broke a rule. */
static bool collect(struct virtio_gpu *g)
{
    uint32_t token, len;
    while (virtq_get_used(&g->ctrlq, &token, &len)) {
        if (token >= VIRTIO_GPU_SLOTS || !g->slots[token].busy || g->slots[token].done) {
            g->broken = "completion for a slot not in flight";
            return false;
        }
        g->slots[token].done = true;
        g->slots[token].used_len = len;
    }
    return !virtio_gpu_error(g);
}

bool virtio_gpu_poll(struct virtio_gpu *g, int slot)
{
    if (slot < 0 || slot >= VIRTIO_GPU_SLOTS || !g->slots[slot].busy)
        return false;
    collect(g);
    return g->slots[slot].done;
}

/* Checks a completed slot's response against what its request asked for. */
static uint32_t check(struct virtio_gpu *g, unsigned slot)
{
    const struct virtio_gpu_slot *s = &g->slots[slot];
    if (s->used_len < HDR_BYTES)
        return VIRTIO_GPU_STATUS_BAD_RESPONSE;     /* not even a header */
    const struct virtio_gpu_ctrl_hdr *r = (const void *)resp_area(g, slot);
    if (s->req.flags & VIRTIO_GPU_FLAG_FENCE) {
        /* §5.7.6.7: the fence is echoed, with the ring index when asked for. */
        uint32_t want = s->req.flags & (VIRTIO_GPU_FLAG_FENCE | VIRTIO_GPU_FLAG_INFO_RING_IDX);
        if ((r->flags & want) != want || r->fence_id != s->req.fence_id || r->ctx_id != s->req.ctx_id ||
            ((want & VIRTIO_GPU_FLAG_INFO_RING_IDX) && r->ring_idx != s->req.ring_idx))
            return VIRTIO_GPU_STATUS_BAD_RESPONSE;
    }
    if (r->type == s->expect)
        return s->used_len >= s->min_len ? VIRTIO_GPU_STATUS_OK : VIRTIO_GPU_STATUS_BAD_RESPONSE;
    if (r->type >= VIRTIO_GPU_RESP_ERR_UNSPEC && r->type <= VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER)
        return r->type;
    return VIRTIO_GPU_STATUS_BAD_RESPONSE;
}

static uint32_t wait_slot(struct virtio_gpu *g, int slot, void *resp, uint32_t room, uint32_t *resp_len,
                          bool sleep)
{
    if (slot < 0 || slot >= VIRTIO_GPU_SLOTS || !g->slots[slot].busy)
        return VIRTIO_GPU_STATUS_TRANSPORT;
    struct virtio_gpu_slot *s = &g->slots[slot];
    sleep = sleep && g->irq;
    uint64_t start = rdtsc();
    while (!s->done) {
        /*
         * Snapshot the counter, re-arm, then look at the used ring: a
         * completion after the snapshot bumps the counter, and the ring-0
         * side of cpu_wait_for_interrupt then returns without halting.
         */
        uint64_t seen = sleep ? irq_count(g->vector) : 0;
        /*
         * A config interrupt (vector + 1) is how a device says DEVICE_NEEDS_RESET,
         * e.g. when the GPU daemon serving it went away: look at the status only
         * then, so the hot path stays free of MMIO reads.
         */
        if (sleep && irq_count((uint8_t)(g->vector + 1)) != g->config_irqs_seen) {
            g->config_irqs_seen = irq_count((uint8_t)(g->vector + 1));
            if (virtio_pci_needs_reset(&g->vp)) {
                g->broken = g->vp.broken;
                return VIRTIO_GPU_STATUS_TRANSPORT;
            }
        }
        if (sleep)
            virtq_arm(&g->ctrlq);
        if (!collect(g))
            return VIRTIO_GPU_STATUS_TRANSPORT;
        if (s->done)
            break;
        if (rdtsc() - start > g->timeout_cycles) {
            if (!virtio_pci_needs_reset(&g->vp))
                g->broken = "timed out waiting for a control response";
            return VIRTIO_GPU_STATUS_TRANSPORT;
        }
        if (sleep) {
            g->sleeps++;
            cpu_wait_for_interrupt(g->vector, seen);
        } else {
            cpu_relax();
        }
    }
    uint32_t status = check(g, (unsigned)slot);
    uint32_t len = s->used_len < VIRTIO_GPU_RESP_BYTES ? s->used_len : VIRTIO_GPU_RESP_BYTES;
    if (resp)
        memcpy(resp, resp_area(g, (unsigned)slot), len < room ? len : room);
    if (resp_len)
        *resp_len = len;
    s->busy = false;
    g->inflight--;
    return status;
}

uint32_t virtio_gpu_wait(struct virtio_gpu *g, int slot, void *resp, uint32_t room, uint32_t *resp_len)
{
    return wait_slot(g, slot, resp, room, resp_len, false);
}

uint32_t virtio_gpu_wait_sleep(struct virtio_gpu *g, int slot, void *resp, uint32_t room, uint32_t *resp_len)
{
    return wait_slot(g, slot, resp, room, resp_len, true);
}

uint32_t virtio_gpu_call(struct virtio_gpu *g, const void *req, uint32_t req_len, const void *data,
                         uint32_t data_len, uint32_t expect, uint32_t min_len, void *resp, uint32_t room)
{
    int slot = virtio_gpu_send(g, req, req_len, data, data_len, expect, min_len);
    if (slot < 0)
        return (uint32_t)-slot;
    virtio_gpu_kick(g);
    return virtio_gpu_wait(g, slot, resp, room, NULL);
}

static uint32_t simple(struct virtio_gpu *g, const void *req, uint32_t len, const void *data, uint32_t data_len)
{
    return virtio_gpu_call(g, req, len, data, data_len, VIRTIO_GPU_RESP_OK_NODATA, HDR_BYTES, NULL, 0);
}

/* ---- commands ---- */

uint32_t virtio_gpu_get_capset_info(struct virtio_gpu *g, uint32_t index, uint32_t *id,
                                    uint32_t *max_version, uint32_t *max_size)
{
    struct virtio_gpu_req_capset_info rq = { .hdr = hdr(VIRTIO_GPU_CMD_GET_CAPSET_INFO, 0), .capset_index = index };
    struct virtio_gpu_resp_capset_info rs;
    uint32_t st = virtio_gpu_call(g, &rq, sizeof rq, NULL, 0, VIRTIO_GPU_RESP_OK_CAPSET_INFO, sizeof rs,
                                  &rs, sizeof rs);
    if (st == VIRTIO_GPU_STATUS_OK) {
        *id = rs.capset_id;
        *max_version = rs.capset_max_version;
        *max_size = rs.capset_max_size;
    }
    return st;
}

uint32_t virtio_gpu_get_capset(struct virtio_gpu *g, uint32_t id, uint32_t version, void *out, uint32_t size)
{
    if (size > VIRTIO_GPU_RESP_BYTES - HDR_BYTES)
        return VIRTIO_GPU_STATUS_TOO_BIG;
    struct virtio_gpu_req_capset rq = { .hdr = hdr(VIRTIO_GPU_CMD_GET_CAPSET, 0), .capset_id = id, .capset_version = version };
    uint8_t rs[VIRTIO_GPU_RESP_BYTES];
    uint32_t st = virtio_gpu_call(g, &rq, sizeof rq, NULL, 0, VIRTIO_GPU_RESP_OK_CAPSET, HDR_BYTES + size,
                                  rs, sizeof rs);
    if (st == VIRTIO_GPU_STATUS_OK)
        memcpy(out, rs + HDR_BYTES, size);
    return st;
}

uint32_t virtio_gpu_ctx_create(struct virtio_gpu *g, uint32_t ctx_id, const char *name)
{
    struct virtio_gpu_req_ctx_create rq = {
        .hdr = hdr(VIRTIO_GPU_CMD_CTX_CREATE, ctx_id),
        .context_init = VIRTIO_GPU_CAPSET_MALVVM_COMPUTE,
    };
    size_t n = name ? strnlen(name, sizeof rq.debug_name) : 0;
    memcpy(rq.debug_name, name ? name : "", n);
    rq.nlen = (uint32_t)n;
    return simple(g, &rq, sizeof rq, NULL, 0);
}

uint32_t virtio_gpu_ctx_destroy(struct virtio_gpu *g, uint32_t ctx_id)
{
    struct virtio_gpu_ctrl_hdr rq = hdr(VIRTIO_GPU_CMD_CTX_DESTROY, ctx_id);
    return simple(g, &rq, sizeof rq, NULL, 0);
}

uint32_t virtio_gpu_create_blob(struct virtio_gpu *g, uint32_t ctx_id, uint32_t res_id, uint32_t blob_mem,
                                uint32_t blob_flags, uint64_t size, const struct virtio_gpu_mem_entry *entries,
                                uint32_t n)
{
    if ((uint64_t)n * sizeof *entries > UINT32_MAX)
        return VIRTIO_GPU_STATUS_TOO_BIG;
    struct virtio_gpu_req_create_blob rq = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB, ctx_id),
        .resource_id = res_id,
        .blob_mem = blob_mem,
        .blob_flags = blob_flags,
        .nr_entries = n,
        .size = size,
    };
    return simple(g, &rq, sizeof rq, entries, n * (uint32_t)sizeof *entries);
}

uint32_t virtio_gpu_attach_backing(struct virtio_gpu *g, uint32_t res_id, const struct virtio_gpu_mem_entry *entries,
                                   uint32_t n)
{
    if (n == 0 || (uint64_t)n * sizeof *entries > UINT32_MAX)
        return VIRTIO_GPU_STATUS_TOO_BIG;
    struct virtio_gpu_req_attach_backing rq = {
        .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, 0), .resource_id = res_id, .nr_entries = n,
    };
    return simple(g, &rq, sizeof rq, entries, n * (uint32_t)sizeof *entries);
}

uint32_t virtio_gpu_detach_backing(struct virtio_gpu *g, uint32_t res_id)
{
    struct virtio_gpu_req_resource rq = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, 0), .resource_id = res_id };
    return simple(g, &rq, sizeof rq, NULL, 0);
}

uint32_t virtio_gpu_ctx_attach(struct virtio_gpu *g, uint32_t ctx_id, uint32_t res_id, bool detach)
{
    struct virtio_gpu_req_resource rq = {
        .hdr = hdr(detach ? VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE : VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE, ctx_id),
        .resource_id = res_id,
    };
    return simple(g, &rq, sizeof rq, NULL, 0);
}

uint32_t virtio_gpu_resource_unref(struct virtio_gpu *g, uint32_t res_id)
{
    struct virtio_gpu_req_resource rq = { .hdr = hdr(VIRTIO_GPU_CMD_RESOURCE_UNREF, 0), .resource_id = res_id };
    return simple(g, &rq, sizeof rq, NULL, 0);
}

uint32_t virtio_gpu_transfer(struct virtio_gpu *g, uint32_t ctx_id, uint32_t res_id, bool to_host, uint32_t x,
                             uint32_t w, uint64_t offset)
{
    struct virtio_gpu_req_transfer_3d rq = {
        .hdr = hdr(to_host ? VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D : VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D, ctx_id),
        .x = x, .w = w, .h = 1, .d = 1,
        .offset = offset,
        .resource_id = res_id,
    };
    return simple(g, &rq, sizeof rq, NULL, 0);
}

int virtio_gpu_submit_3d(struct virtio_gpu *g, uint32_t ctx_id, int ring, uint64_t fence_id, const void *stream,
                         uint32_t size)
{
    struct virtio_gpu_req_submit rq = { .hdr = hdr(VIRTIO_GPU_CMD_SUBMIT_3D, ctx_id), .size = size };
    rq.hdr.flags = VIRTIO_GPU_FLAG_FENCE;
    rq.hdr.fence_id = fence_id;
    if (ring >= 0) {
        if (ring > 255)
            return -(int)VIRTIO_GPU_STATUS_TOO_BIG;
        rq.hdr.flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
        rq.hdr.ring_idx = (uint8_t)ring;
    }
    int slot = virtio_gpu_send(g, &rq, sizeof rq, stream, size, VIRTIO_GPU_RESP_OK_NODATA, HDR_BYTES);
    if (slot >= 0)
        virtio_gpu_kick(g);
    return slot;
}

/* ---- open ---- */

static const char *find_capset(struct virtio_gpu *g)
{
    static char why[96];
    if (g->num_capsets == 0)
        return "device reports no capsets";
    for (uint32_t i = 0; i < g->num_capsets && i < 64; i++) {
        uint32_t id, maxv, size;
        uint32_t st = virtio_gpu_get_capset_info(g, i, &id, &maxv, &size);
        if (st != VIRTIO_GPU_STATUS_OK) {
            snprintf(why, sizeof why, "GET_CAPSET_INFO %u: %s", i, virtio_gpu_status_name(st));
            return why;
        }
        if (id != VIRTIO_GPU_CAPSET_MALVVM_COMPUTE)
            continue;
        if (maxv < VIRTIO_GPU_CAPSET_MALVVM_VERSION)
            return "compute capset version too old";
        if (size < CAPSET_BYTES || size > VIRTIO_GPU_RESP_BYTES - HDR_BYTES)
            return "compute capset size out of range";
        g->capset_max_version = maxv;
        g->capset_max_size = size;
        st = virtio_gpu_get_capset(g, id, VIRTIO_GPU_CAPSET_MALVVM_VERSION, &g->capset, CAPSET_BYTES);
        if (st != VIRTIO_GPU_STATUS_OK) {
            snprintf(why, sizeof why, "GET_CAPSET: %s", virtio_gpu_status_name(st));
            return why;
        }
        const struct virtio_gpu_compute_capset *c = &g->capset;
        if (c->capset_version != VIRTIO_GPU_CAPSET_MALVVM_VERSION || c->stream_version != 1)
            return "compute capset: unsupported capset or stream version";
        if (c->max_commands == 0 || c->max_stream_bytes < 64 || c->memory_bytes == 0)
            return "compute capset: implausible limits";
        return NULL;
    }
    return "no compute capset (0x4d) among the device's capsets";
}

static const char *open_gpu(struct virtio_gpu *g, unsigned nth, uint64_t optional, bool msix, uint8_t vector)
{
    uint8_t *slot_mem = g->slot_mem;    /* kept across re-opens */
    memset(g, 0, sizeof *g);
    g->timeout_cycles = DEFAULT_TIMEOUT_CYCLES;

    const struct pci_function *f = virtio_pci_find(VIRTIO_TYPE_GPU, nth);
    if (!f)
        return "no virtio-gpu (1af4:1050) found";
    uint64_t required = VIRTIO_BIT(VIRTIO_F_VERSION_1) | VIRTIO_BIT(VIRTIO_GPU_F_RESOURCE_BLOB) |
                        VIRTIO_BIT(VIRTIO_GPU_F_CONTEXT_INIT);
    optional &= VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC);
    const char *why = virtio_pci_probe(&g->vp, f);
    if (!why)
        why = virtio_pci_negotiate(&g->vp, required | optional, required);
    if (why)
        return why;
    if (!virtio_cfg_read32(&g->vp, CFG_NUM_SCANOUTS, &g->num_scanouts) ||
        !virtio_cfg_read32(&g->vp, CFG_NUM_CAPSETS, &g->num_capsets))
        return "device config too short for num_scanouts/num_capsets";

    uint16_t queue_entry = VIRTIO_NO_VECTOR;
    if (msix) {
        /* As virtio_blk: entry 0 for config changes, 1 for the queue; one entry gets the queue only. */
        why = pci_msix_init(f, &g->vp.msix);
        if (why)
            return why;
        g->vp.msix_ready = true;
        bool two = g->vp.msix.entries >= 2;
        why = virtio_pci_msix_setup(&g->vp, two ? 0 : VIRTIO_NO_VECTOR, (uint8_t)(vector + 1));
        if (why)
            return why;
        queue_entry = two ? 1 : 0;
        if (!virtio_pci_msix_route(&g->vp, queue_entry, vector))
            return "cannot program the control queue's MSI-X entry";
        g->irq = true;
        g->vector = vector;
    }
    why = virtio_pci_setup_queue(&g->vp, &g->ctrlq, 0, VIRTQ_MAX_SIZE, queue_entry);
    if (why)
        return why;
    g->slot_mem = slot_mem ? slot_mem : dma_alloc((uint64_t)VIRTIO_GPU_SLOTS * SLOT_BYTES, 64);
    if (!g->slot_mem)
        return "out of DMA memory for request slots";
    virtio_pci_driver_ok(&g->vp);
    if (virtio_pci_needs_reset(&g->vp))
        return g->vp.broken;
    return find_capset(g);
}

const char *virtio_gpu_open(struct virtio_gpu *g, unsigned nth, uint64_t optional)
{
    return open_gpu(g, nth, optional, false, 0);
}

const char *virtio_gpu_open_msix(struct virtio_gpu *g, unsigned nth, uint64_t optional, uint8_t vector)
{
    return open_gpu(g, nth, optional, true, vector);
}

/* ---- names ---- */

const char *virtio_gpu_status_name(uint32_t status)
{
    switch (status) {
    case VIRTIO_GPU_STATUS_OK: return "OK";
    case VIRTIO_GPU_RESP_OK_NODATA: return "OK_NODATA";
    case VIRTIO_GPU_RESP_ERR_UNSPEC: return "ERR_UNSPEC";
    case VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY: return "ERR_OUT_OF_MEMORY";
    case VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID: return "ERR_INVALID_SCANOUT_ID";
    case VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID: return "ERR_INVALID_RESOURCE_ID";
    case VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID: return "ERR_INVALID_CONTEXT_ID";
    case VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER: return "ERR_INVALID_PARAMETER";
    case VIRTIO_GPU_STATUS_TRANSPORT: return "transport failure";
    case VIRTIO_GPU_STATUS_BAD_RESPONSE: return "malformed response";
    case VIRTIO_GPU_STATUS_NO_SLOT: return "no free request slot";
    case VIRTIO_GPU_STATUS_TOO_BIG: return "request too large";
    default: return "unknown status";
    }
}

const char *virtio_gpu_feature_name(unsigned bit)
{
    switch (bit) {
    case VIRTIO_GPU_F_VIRGL: return "VIRGL";
    case VIRTIO_GPU_F_EDID: return "EDID";
    case VIRTIO_GPU_F_RESOURCE_UUID: return "RESOURCE_UUID";
    case VIRTIO_GPU_F_RESOURCE_BLOB: return "RESOURCE_BLOB";
    case VIRTIO_GPU_F_CONTEXT_INIT: return "CONTEXT_INIT";
    default: return virtio_transport_feature_name(bit);
    }
}
