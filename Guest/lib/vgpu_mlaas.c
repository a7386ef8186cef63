/*
 * MLaaS requests through the para-vGPU (capset 0x4d version 2,
 * docs/vgpu-protocol.md "MLaaS requests"): list the services this VM is
 * permitted, enable one with parameters, disable it.
 */
#include "malv/vgpu.h"
#include "malv/string.h"

#define HDR_BYTES ((uint32_t)sizeof(struct virtio_gpu_ctrl_hdr))
/* Parameters travel in a buffer of their own (DMA: a static page, not the stack). */
static uint8_t params_page[VIRTIO_GPU_MLAAS_MAX_PARAMS] __attribute__((aligned(4096)));

_Static_assert(sizeof(struct virtio_gpu_mlaas_enable) == 64, "MLAAS_ENABLE layout");
_Static_assert(sizeof(struct virtio_gpu_mlaas_disable) == 56, "MLAAS_DISABLE layout");
_Static_assert(sizeof(struct virtio_gpu_mlaas_request) == 64, "MLAAS_REQUEST layout");
_Static_assert(sizeof(struct virtio_gpu_resp_mlaas_response) == 32, "MLAAS_REQUEST response layout");
_Static_assert(sizeof(struct virtio_gpu_mlaas_entry) == 40, "MLaaS list entry layout");
_Static_assert(sizeof(struct virtio_gpu_resp_mlaas_list) == 352, "MLAAS_LIST response layout");
_Static_assert(sizeof(struct virtio_gpu_resp_mlaas_error) <= VIRTIO_GPU_RESP_BYTES, "MLaaS error fits");

static void clear_error(struct vgpu_mlaas_error *err)
{
    if (err) {
        err->status = 0;
        err->message[0] = '\0';
    }
}

/* A device error's reason, as much of it as came back (`len` bytes of response). */
static void take_error(struct vgpu_mlaas_error *err, const uint8_t *resp, uint32_t len)
{
    if (!err || len < HDR_BYTES + 8)
        return;
    const struct virtio_gpu_resp_mlaas_error *e = (const void *)resp;
    err->status = e->mlaas_status;
    uint32_t n = e->message_length;
    if (n > VIRTIO_GPU_MLAAS_MAX_MESSAGE)
        n = VIRTIO_GPU_MLAAS_MAX_MESSAGE;
    if (n > len - HDR_BYTES - 8)
        n = len - HDR_BYTES - 8;
    memcpy(err->message, e->message, n);
    err->message[n] = '\0';
}

/* send + kick + wait, keeping the response (and its length) for errors. */
static uint32_t call(struct vgpu *g, const void *req, uint32_t req_len, const void *data, uint32_t data_len,
                     uint32_t expect, uint32_t min_len, uint8_t *resp, struct vgpu_mlaas_error *err)
{
    clear_error(err);
    int slot = virtio_gpu_send(&g->dev, req, req_len, data, data_len, expect, min_len);
    if (slot < 0)
        return (uint32_t)-slot;
    virtio_gpu_kick(&g->dev);
    uint32_t len = 0;
    uint32_t st = virtio_gpu_wait(&g->dev, slot, resp, VIRTIO_GPU_RESP_BYTES, &len);
    if (st >= VIRTIO_GPU_RESP_ERR_UNSPEC && st <= VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER)
        take_error(err, resp, len);
    return st;
}

static bool put_name(char out[VIRTIO_GPU_MLAAS_NAME_BYTES], const char *name)
{
    size_t n = name ? strnlen(name, VIRTIO_GPU_MLAAS_NAME_BYTES + 1) : 0;
    if (n > VIRTIO_GPU_MLAAS_NAME_BYTES)
        return false;
    memset(out, 0, VIRTIO_GPU_MLAAS_NAME_BYTES);
    memcpy(out, name, n);
    return true;
}

bool vgpu_mlaas_available(struct vgpu *g)
{
    if (g->dev.capset_max_version < VIRTIO_GPU_CAPSET_MALVVM_VERSION_MLAAS)
        return false;
    struct virtio_gpu_compute_capset c;
    uint32_t st = virtio_gpu_get_capset(&g->dev, VIRTIO_GPU_CAPSET_MALVVM_COMPUTE, VIRTIO_GPU_CAPSET_MALVVM_VERSION_MLAAS,
                                        &c, sizeof c);
    return st == VIRTIO_GPU_STATUS_OK && c.capset_version == VIRTIO_GPU_CAPSET_MALVVM_VERSION_MLAAS &&
           (c.reserved & VIRTIO_GPU_CAPSET_MLAAS_REQUESTS);
}

uint32_t vgpu_mlaas_list(struct vgpu *g, struct vgpu_mlaas_service *out, uint32_t cap, uint32_t *count,
                         uint32_t *total, struct vgpu_mlaas_error *err)
{
    struct virtio_gpu_ctrl_hdr rq = { .type = VIRTIO_GPU_CMD_MALVVM_MLAAS_LIST };
    uint8_t resp[VIRTIO_GPU_RESP_BYTES];
    uint32_t st = call(g, &rq, sizeof rq, NULL, 0, VIRTIO_GPU_RESP_OK_MALVVM_MLAAS_LIST, HDR_BYTES + 8, resp, err);
    if (st != VIRTIO_GPU_STATUS_OK)
        return st;
    const struct virtio_gpu_resp_mlaas_list *l = (const void *)resp;
    /* Never trust the device's count beyond what the structure holds. */
    uint32_t n = l->count < VIRTIO_GPU_MLAAS_MAX_LIST ? l->count : VIRTIO_GPU_MLAAS_MAX_LIST;
    if (n > cap)
        n = cap;
    for (uint32_t i = 0; i < n; i++) {
        memcpy(out[i].name, l->entries[i].name, VIRTIO_GPU_MLAAS_NAME_BYTES);
        out[i].name[VIRTIO_GPU_MLAAS_NAME_BYTES] = '\0';
        out[i].kind = l->entries[i].kind;
        out[i].loaded = l->entries[i].flags & 1;
        out[i].enabled = l->entries[i].flags & 2;
    }
    if (count)
        *count = n;
    if (total)
        *total = l->total;
    return VIRTIO_GPU_STATUS_OK;
}

uint32_t vgpu_mlaas_enable(struct vgpu *g, const char *name, const void *params, uint32_t len,
                           struct vgpu_mlaas_error *err)
{
    clear_error(err);
    struct virtio_gpu_mlaas_enable rq = {
        .hdr = { .type = VIRTIO_GPU_CMD_MALVVM_MLAAS_ENABLE },
        .parameters_length = len,
    };
    if (!put_name(rq.name, name) || len > VIRTIO_GPU_MLAAS_MAX_PARAMS || (len && !params))
        return VIRTIO_GPU_STATUS_TOO_BIG;
    memcpy(params_page, params, len);
    uint8_t resp[VIRTIO_GPU_RESP_BYTES];
    return call(g, &rq, sizeof rq, len ? params_page : NULL, len, VIRTIO_GPU_RESP_OK_NODATA, HDR_BYTES, resp, err);
}

uint32_t vgpu_mlaas_disable(struct vgpu *g, const char *name, struct vgpu_mlaas_error *err)
{
    clear_error(err);
    struct virtio_gpu_mlaas_disable rq = { .hdr = { .type = VIRTIO_GPU_CMD_MALVVM_MLAAS_DISABLE } };
    if (!put_name(rq.name, name))
        return VIRTIO_GPU_STATUS_TOO_BIG;
    uint8_t resp[VIRTIO_GPU_RESP_BYTES];
    return call(g, &rq, sizeof rq, NULL, 0, VIRTIO_GPU_RESP_OK_NODATA, HDR_BYTES, resp, err);
}

uint32_t vgpu_mlaas_request(struct vgpu *g, const char *name, const void *request, uint32_t len, void *answer,
                            uint32_t cap, uint32_t *answer_len, struct vgpu_mlaas_error *err)
{
    clear_error(err);
    if (answer_len)
        *answer_len = 0;
    if (cap > VGPU_MLAAS_MAX_ANSWER)
        cap = VGPU_MLAAS_MAX_ANSWER;
    struct virtio_gpu_mlaas_request rq = {
        .hdr = { .type = VIRTIO_GPU_CMD_MALVVM_MLAAS_REQUEST },
        .request_length = len,
        .response_capacity = cap,
    };
    if (!put_name(rq.name, name) || len > VIRTIO_GPU_MLAAS_MAX_REQUEST || (len && !request))
        return VIRTIO_GPU_STATUS_TOO_BIG;
    memcpy(params_page, request, len);
    uint8_t resp[VIRTIO_GPU_RESP_BYTES];
    uint32_t st = call(g, &rq, sizeof rq, len ? params_page : NULL, len, VIRTIO_GPU_RESP_OK_MALVVM_MLAAS_RESPONSE,
                       HDR_BYTES + 8, resp, err);
    if (st != VIRTIO_GPU_STATUS_OK)
        return st;
    const struct virtio_gpu_resp_mlaas_response *r = (const void *)resp;
    /* Never trust the device's length beyond what was asked and what arrived. */
    uint32_t n = r->length < cap ? r->length : cap;
    memcpy(answer, r->data, n);
    if (answer_len)
        *answer_len = n;
    return VIRTIO_GPU_STATUS_OK;
}

const char *vgpu_mlaas_status_name(uint32_t status)
{
    switch (status) {
    case VGPU_MLAAS_MALFORMED: return "malformed";
    case VGPU_MLAAS_UNKNOWN: return "unknown service";
    case VGPU_MLAAS_NOT_PERMITTED: return "not permitted";
    case VGPU_MLAAS_NOT_LOADED: return "not loaded";
    case VGPU_MLAAS_REFUSED: return "refused";
    case VGPU_MLAAS_NOT_ENABLED: return "not enabled";
    case VGPU_MLAAS_UNAVAILABLE: return "unavailable";
    case VGPU_MLAAS_INTERNAL: return "internal";
    default: return "none";
    }
}
