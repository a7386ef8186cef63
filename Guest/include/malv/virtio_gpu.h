/*
 * virtio-gpu (virtio 1.2 §5.7) on the virtio-pci transport, as malvvm's
 * para-vGPU speaks it (docs/vgpu-protocol.md): no scanouts and no virgl,
 * blob resources, contexts opened with CONTEXT_INIT on the compute capset
 * 0x4d, and SUBMIT_3D carrying the compute command stream.
 *
 * The control queue carries up to VIRTIO_GPU_SLOTS requests at a time. Each
 * request has a slot: its fixed structure is copied into the slot's request
 * area (one readable descriptor), an optional caller-owned payload follows
 * (memory entries, a command stream: a second readable descriptor that must
 * stay untouched until the request completes), and the device writes the
 * response into the slot's response area. Completions are polled from the
 * used ring (no interrupts). Every response is checked: used length, type,
 * the fence echo of fenced requests, and the size of data-carrying responses.
 *
 * Status values: 0 = the expected OK response; 0x1200..0x12ff = the device's
 * error response; VIRTIO_GPU_STATUS_* for driver-side failures.
 */
#ifndef MALV_VIRTIO_GPU_H
#define MALV_VIRTIO_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "malv/virtio.h"

#define VIRTIO_TYPE_GPU 16

/* Feature bits (§5.7.3) */
#define VIRTIO_GPU_F_VIRGL          0
#define VIRTIO_GPU_F_EDID           1
#define VIRTIO_GPU_F_RESOURCE_UUID  2
#define VIRTIO_GPU_F_RESOURCE_BLOB  3
#define VIRTIO_GPU_F_CONTEXT_INIT   4

/* Control types (enum virtio_gpu_ctrl_type) */
#define VIRTIO_GPU_CMD_GET_DISPLAY_INFO         0x0100
#define VIRTIO_GPU_CMD_RESOURCE_UNREF           0x0102
#define VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING  0x0106
#define VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING  0x0107
#define VIRTIO_GPU_CMD_GET_CAPSET_INFO          0x0108
#define VIRTIO_GPU_CMD_GET_CAPSET               0x0109
#define VIRTIO_GPU_CMD_RESOURCE_CREATE_BLOB     0x010c
#define VIRTIO_GPU_CMD_CTX_CREATE               0x0200
#define VIRTIO_GPU_CMD_CTX_DESTROY              0x0201
#define VIRTIO_GPU_CMD_CTX_ATTACH_RESOURCE      0x0202
#define VIRTIO_GPU_CMD_CTX_DETACH_RESOURCE      0x0203
#define VIRTIO_GPU_CMD_TRANSFER_TO_HOST_3D      0x0205
#define VIRTIO_GPU_CMD_TRANSFER_FROM_HOST_3D    0x0206
#define VIRTIO_GPU_CMD_SUBMIT_3D                0x0207
/* malvvm's MLaaS requests (capset 0x4d version 2, docs/vgpu-protocol.md) */
#define VIRTIO_GPU_CMD_MALVVM_MLAAS_LIST        0x4d00
#define VIRTIO_GPU_CMD_MALVVM_MLAAS_ENABLE      0x4d01
#define VIRTIO_GPU_CMD_MALVVM_MLAAS_DISABLE     0x4d02
#define VIRTIO_GPU_CMD_MALVVM_MLAAS_REQUEST     0x4d03

#define VIRTIO_GPU_RESP_OK_NODATA               0x1100
#define VIRTIO_GPU_RESP_OK_DISPLAY_INFO         0x1101
#define VIRTIO_GPU_RESP_OK_CAPSET_INFO          0x1102
#define VIRTIO_GPU_RESP_OK_CAPSET               0x1103
#define VIRTIO_GPU_RESP_OK_MALVVM_MLAAS_LIST    0x4d80
#define VIRTIO_GPU_RESP_OK_MALVVM_MLAAS_RESPONSE 0x4d81
#define VIRTIO_GPU_RESP_ERR_UNSPEC              0x1200
#define VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY       0x1201
#define VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID  0x1202
#define VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID 0x1203
#define VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID  0x1204
#define VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER   0x1205

#define VIRTIO_GPU_FLAG_FENCE           (1u << 0)
#define VIRTIO_GPU_FLAG_INFO_RING_IDX   (1u << 1)

#define VIRTIO_GPU_BLOB_MEM_GUEST       1
#define VIRTIO_GPU_BLOB_MEM_HOST3D      2
#define VIRTIO_GPU_BLOB_FLAG_USE_SHAREABLE 2

#define VIRTIO_GPU_CONTEXT_INIT_CAPSET_ID_MASK 0xff

/* malvvm's compute capset */
#define VIRTIO_GPU_CAPSET_MALVVM_COMPUTE 0x4d
#define VIRTIO_GPU_CAPSET_MALVVM_VERSION 1
/* Version 2: the MLaaS requests; `reserved` becomes mlaas_flags. */
#define VIRTIO_GPU_CAPSET_MALVVM_VERSION_MLAAS 2
#define VIRTIO_GPU_CAPSET_MLAAS_REQUESTS (1u << 0)

/* Driver-side statuses (never device response codes). */
#define VIRTIO_GPU_STATUS_OK            0
#define VIRTIO_GPU_STATUS_TRANSPORT     0x10000u    /* queue broken, device needs reset, timeout */
#define VIRTIO_GPU_STATUS_BAD_RESPONSE  0x10001u    /* short, unexpected type, wrong fence echo */
#define VIRTIO_GPU_STATUS_NO_SLOT       0x10002u    /* too many requests in flight */
#define VIRTIO_GPU_STATUS_TOO_BIG       0x10003u    /* a request the driver cannot carry */

struct __attribute__((packed)) virtio_gpu_ctrl_hdr {
    uint32_t type;
    uint32_t flags;
    uint64_t fence_id;
    uint32_t ctx_id;
    uint8_t ring_idx;
    uint8_t padding[3];
};

struct __attribute__((packed)) virtio_gpu_mem_entry {
    uint64_t addr;
    uint32_t length;
    uint32_t padding;
};

/* Request and response layouts (Linux include/uapi/linux/virtio_gpu.h). */
struct __attribute__((packed)) virtio_gpu_req_capset_info {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t capset_index, padding;
};
struct __attribute__((packed)) virtio_gpu_resp_capset_info {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t capset_id, capset_max_version, capset_max_size, padding;
};
struct __attribute__((packed)) virtio_gpu_req_capset {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t capset_id, capset_version;
};
struct __attribute__((packed)) virtio_gpu_req_ctx_create {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t nlen, context_init;
    char debug_name[64];
};
struct __attribute__((packed)) virtio_gpu_req_resource {      /* unref, ctx attach/detach, detach backing */
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t resource_id, padding;
};
struct __attribute__((packed)) virtio_gpu_req_create_blob {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t resource_id, blob_mem, blob_flags, nr_entries;
    uint64_t blob_id, size;
};
struct __attribute__((packed)) virtio_gpu_req_attach_backing {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t resource_id, nr_entries;
};
struct __attribute__((packed)) virtio_gpu_req_transfer_3d {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t x, y, z, w, h, d;
    uint64_t offset;
    uint32_t resource_id, level, stride, layer_stride;
};
struct __attribute__((packed)) virtio_gpu_req_submit {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t size, padding;
};

/* Capset 0x4d, version 1 (40 bytes). */
struct __attribute__((packed)) virtio_gpu_compute_capset {
    uint32_t capset_version;
    uint32_t stream_version;
    uint32_t opcode_mask;
    uint32_t max_commands;
    uint32_t max_stream_bytes;
    uint32_t max_contexts;
    uint64_t memory_bytes;
    uint32_t backend;           /* 0 CPU reference, 1 Vulkan */
    uint32_t reserved;          /* version 2: mlaas_flags (VIRTIO_GPU_CAPSET_MLAAS_REQUESTS) */
};

/* MLaaS requests (capset version 2). Names are NUL-padded, [a-z0-9][a-z0-9-]*. */
#define VIRTIO_GPU_MLAAS_NAME_BYTES     32
#define VIRTIO_GPU_MLAAS_MAX_PARAMS     4096
#define VIRTIO_GPU_MLAAS_MAX_LIST       8
#define VIRTIO_GPU_MLAAS_MAX_MESSAGE    200
struct __attribute__((packed)) virtio_gpu_mlaas_enable {
    struct virtio_gpu_ctrl_hdr hdr;
    char name[VIRTIO_GPU_MLAAS_NAME_BYTES];
    uint32_t parameters_length;         /* <= 4096 bytes, following this structure */
    uint32_t reserved;
};
struct __attribute__((packed)) virtio_gpu_mlaas_disable {
    struct virtio_gpu_ctrl_hdr hdr;
    char name[VIRTIO_GPU_MLAAS_NAME_BYTES];
};
struct __attribute__((packed)) virtio_gpu_mlaas_entry {
    char name[VIRTIO_GPU_MLAAS_NAME_BYTES];
    uint32_t kind;                      /* 1 OS-for-ML, 2 ML-for-OS, 0 not loaded */
    uint32_t flags;                     /* bit 0 loaded, bit 1 enabled */
};
struct __attribute__((packed)) virtio_gpu_resp_mlaas_list {
    struct virtio_gpu_ctrl_hdr hdr;
    uint32_t count, total;
    struct virtio_gpu_mlaas_entry entries[VIRTIO_GPU_MLAAS_MAX_LIST];
};
/* A request to an enabled service (its own format); the request bytes follow. */
#define VIRTIO_GPU_MLAAS_MAX_REQUEST    4096
struct __attribute__((packed)) virtio_gpu_mlaas_request {
    struct virtio_gpu_ctrl_hdr hdr;
    char name[VIRTIO_GPU_MLAAS_NAME_BYTES];
    uint32_t request_length;            /* <= 4096 bytes, following this structure */
    uint32_t response_capacity;         /* <= 4096: the most answer bytes wanted */
};
struct __attribute__((packed)) virtio_gpu_resp_mlaas_response {
    struct virtio_gpu_ctrl_hdr hdr;     /* type: VIRTIO_GPU_RESP_OK_MALVVM_MLAAS_RESPONSE */
    uint32_t length;                    /* answer bytes that follow */
    uint32_t reserved;
    uint8_t data[];
};
/* An error response to an MLaaS request (as much as the response room holds). */
struct __attribute__((packed)) virtio_gpu_resp_mlaas_error {
    struct virtio_gpu_ctrl_hdr hdr;     /* type: VIRTIO_GPU_RESP_ERR_* */
    uint32_t mlaas_status;              /* VGPU_MLAAS_* reason */
    uint32_t message_length;
    char message[VIRTIO_GPU_MLAAS_MAX_MESSAGE];
};

#define VIRTIO_GPU_SLOTS        64
#define VIRTIO_GPU_REQ_BYTES    256     /* fixed part of a request */
#define VIRTIO_GPU_RESP_BYTES   512     /* largest response: display info, 408 bytes */

struct virtio_gpu_slot {
    bool busy, done;
    uint32_t used_len;
    uint32_t expect;            /* the OK response type this request should get */
    uint32_t min_len;           /* ...and at least this many bytes of it */
    struct virtio_gpu_ctrl_hdr req;  /* copy of the header, for the fence echo check */
};

struct virtio_gpu {
    struct virtio_pci vp;
    struct virtq ctrlq;
    uint32_t num_scanouts, num_capsets;
    struct virtio_gpu_compute_capset capset;    /* valid once open succeeded */
    uint32_t capset_max_version, capset_max_size;
    uint8_t *slot_mem;          /* per slot: request area, then response area (DMA) */
    struct virtio_gpu_slot slots[VIRTIO_GPU_SLOTS];
    unsigned inflight;
    uint64_t timeout_cycles;
    uint64_t requests;          /* requests sent */
    const char *broken;         /* driver-detected fault (besides vp/ctrlq's own) */
    bool irq;                   /* control queue completions by MSI-X (virtio_gpu_open_msix) */
    uint8_t vector;             /* ...on this vector */
    uint64_t config_irqs_seen;  /* config-change interrupts (vector + 1) already looked at */
    uint64_t sleeps;            /* cpu_wait_for_interrupt calls made by virtio_gpu_wait_sleep */
};

/*
 * Finds the nth virtio-gpu, negotiates VERSION_1, RESOURCE_BLOB and
 * CONTEXT_INIT (required) plus `optional` transport features (EVENT_IDX,
 * INDIRECT_DESC), starts the control queue, and looks up capset 0x4d
 * (GET_CAPSET_INFO over every index, then GET_CAPSET). NULL on success.
 */
const char *virtio_gpu_open(struct virtio_gpu *g, unsigned nth, uint64_t optional);
/*
 * The same, with the control queue interrupting on `vector` through MSI-X
 * (the config vector, when the table has two entries, is vector + 1).
 * virtio_gpu_wait still polls; virtio_gpu_wait_sleep halts the vCPU between
 * interrupts instead.
 */
const char *virtio_gpu_open_msix(struct virtio_gpu *g, unsigned nth, uint64_t optional, uint8_t vector);

/* Why the device is unusable, or NULL. */
const char *virtio_gpu_error(struct virtio_gpu *g);

/*
 * Queues one request: `req` (its header first, req_len <= VIRTIO_GPU_REQ_BYTES)
 * is copied; `data` (may be NULL) is sent as is after it. `expect` is the OK
 * response type, `min_len` the least response length accepted with it.
 * Returns the slot (>= 0), or -(status) on failure. Nothing reaches the
 * device until virtio_gpu_kick.
 */
int virtio_gpu_send(struct virtio_gpu *g, const void *req, uint32_t req_len, const void *data,
                    uint32_t data_len, uint32_t expect, uint32_t min_len);
/*
 * Queues a request whose descriptors the caller lays out, for tests of
 * truncated and oddly split chains: `bufs` as given (n + 1 <= VIRTQ_MAX_SEGS),
 * then `resp_room` bytes of the slot's response area as the writable part
 * (0: no writable descriptor at all). `req` (may be NULL) is the header the
 * fence echo is checked against. Returns the slot or -(status).
 */
int virtio_gpu_send_chain(struct virtio_gpu *g, const struct virtq_buf *bufs, unsigned n, uint32_t resp_room,
                          const struct virtio_gpu_ctrl_hdr *req, uint32_t expect, uint32_t min_len);
void virtio_gpu_kick(struct virtio_gpu *g);

/* Whether the slot's response has arrived (collects completions, never waits). */
bool virtio_gpu_poll(struct virtio_gpu *g, int slot);

/*
 * Waits (bounded) for the slot's response, checks it and frees the slot.
 * Copies up to `room` response bytes to `resp` (may be NULL). Returns a status.
 */
uint32_t virtio_gpu_wait(struct virtio_gpu *g, int slot, void *resp, uint32_t room, uint32_t *resp_len);
/*
 * virtio_gpu_wait, but on a device opened with MSI-X the vCPU sleeps
 * (cpu_wait_for_interrupt) until the queue interrupts instead of spinning, so
 * the host threads doing the work get the core. Polls otherwise.
 */
uint32_t virtio_gpu_wait_sleep(struct virtio_gpu *g, int slot, void *resp, uint32_t room, uint32_t *resp_len);

/* send + kick + wait. */
uint32_t virtio_gpu_call(struct virtio_gpu *g, const void *req, uint32_t req_len, const void *data,
                         uint32_t data_len, uint32_t expect, uint32_t min_len, void *resp, uint32_t room);

/* ---- the commands (synchronous unless noted; each returns a status) ---- */

uint32_t virtio_gpu_get_capset_info(struct virtio_gpu *g, uint32_t index, uint32_t *id,
                                    uint32_t *max_version, uint32_t *max_size);
uint32_t virtio_gpu_get_capset(struct virtio_gpu *g, uint32_t id, uint32_t version, void *out,
                               uint32_t size);
/* context_init = the compute capset id. */
uint32_t virtio_gpu_ctx_create(struct virtio_gpu *g, uint32_t ctx_id, const char *name);
uint32_t virtio_gpu_ctx_destroy(struct virtio_gpu *g, uint32_t ctx_id);
/* GUEST blob (entries cover it) owned by ctx_id, or HOST3D (entries NULL, n 0). */
uint32_t virtio_gpu_create_blob(struct virtio_gpu *g, uint32_t ctx_id, uint32_t res_id,
                                uint32_t blob_mem, uint32_t blob_flags, uint64_t size,
                                const struct virtio_gpu_mem_entry *entries, uint32_t n);
uint32_t virtio_gpu_attach_backing(struct virtio_gpu *g, uint32_t res_id,
                                   const struct virtio_gpu_mem_entry *entries, uint32_t n);
uint32_t virtio_gpu_detach_backing(struct virtio_gpu *g, uint32_t res_id);
uint32_t virtio_gpu_ctx_attach(struct virtio_gpu *g, uint32_t ctx_id, uint32_t res_id, bool detach);
uint32_t virtio_gpu_resource_unref(struct virtio_gpu *g, uint32_t res_id);
/* Bytes [x, x+w) of the blob <-> [offset, offset+w) of its backing. */
uint32_t virtio_gpu_transfer(struct virtio_gpu *g, uint32_t ctx_id, uint32_t res_id, bool to_host,
                             uint32_t x, uint32_t w, uint64_t offset);

/*
 * SUBMIT_3D, asynchronous: fenced with `fence_id` on ring `ring` of the
 * context (ring < 0: the device-wide timeline, no INFO_RING_IDX). The
 * stream must stay untouched until virtio_gpu_wait on the returned slot.
 * Returns the slot or -(status).
 */
int virtio_gpu_submit_3d(struct virtio_gpu *g, uint32_t ctx_id, int ring, uint64_t fence_id,
                         const void *stream, uint32_t size);

/* A name for a status or response code. */
const char *virtio_gpu_status_name(uint32_t status);
const char *virtio_gpu_feature_name(unsigned bit);

#endif
