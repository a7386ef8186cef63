#include "malv/vgpu.h"
#include "malv/console.h"

#include "malv/memory.h"
#include "malv/pci.h"
#include "malv/string.h"

#define PAGE 4096ull
/* Backing entries carry a u32 length: big blobs take several. */
#define ENTRY_MAX (1ull << 30)
#define MAX_ENTRIES 8

#define VGPU_OPTIONAL (VIRTIO_BIT(VIRTIO_F_EVENT_IDX) | VIRTIO_BIT(VIRTIO_F_INDIRECT_DESC))

const char *vgpu_open(struct vgpu *g, unsigned nth)
{
    g->next_ctx_id = 1;
    g->next_res_id = 1;
    const char *why = pci_init();     /* enumerates once; later calls are no-ops */
    if (why)
        return why;
    return virtio_gpu_open(&g->dev, nth, VGPU_OPTIONAL);
}

const char *vgpu_open_msix(struct vgpu *g, unsigned nth, uint8_t vector)
{
    g->next_ctx_id = 1;
    g->next_res_id = 1;
    const char *why = pci_init();
    if (why)
        return why;
    return virtio_gpu_open_msix(&g->dev, nth, VGPU_OPTIONAL, vector);
}

const char *vgpu_status_name(uint32_t status)
{
    return virtio_gpu_status_name(status);
}

void vgpu_print_failure(const char *program, const char *what, const struct vgpu *g, uint32_t status)
{
    if (status == VIRTIO_GPU_STATUS_TRANSPORT && g->dev.broken)
        printf("%s: %s: %s (%s)\n", program, what, vgpu_status_name(status), g->dev.broken);
    else
        printf("%s: %s: %s\n", program, what, vgpu_status_name(status));
}

/* ---- contexts ---- */

uint32_t vgpu_ctx_create(struct vgpu *g, struct vgpu_ctx *c, const char *name, int ring)
{
    *c = (struct vgpu_ctx){ .gpu = g, .id = g->next_ctx_id++, .ring = ring, .next_fence = 1 };
    return virtio_gpu_ctx_create(&g->dev, c->id, name);
}

uint32_t vgpu_ctx_destroy(struct vgpu_ctx *c)
{
    return virtio_gpu_ctx_destroy(&c->gpu->dev, c->id);
}

/* ---- buffers ---- */

uint32_t vgpu_buf_create(struct vgpu_ctx *c, struct vgpu_buf *b, uint64_t size, enum vgpu_mem mem)
{
    struct virtio_gpu *d = &c->gpu->dev;
    *b = (struct vgpu_buf){ .ctx = c, .mem = mem, .size = size };
    uint64_t pages = (size + PAGE - 1) & ~(PAGE - 1);
    if (size == 0 || pages < size || pages > MAX_ENTRIES * ENTRY_MAX)
        return VIRTIO_GPU_STATUS_TOO_BIG;
    b->ptr = dma_alloc(pages, PAGE);
    if (!b->ptr)
        return VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    struct virtio_gpu_mem_entry entries[MAX_ENTRIES];
    uint32_t n = 0;
    for (uint64_t at = 0; at < size; at += ENTRY_MAX, n++) {
        uint64_t len = size - at < ENTRY_MAX ? size - at : ENTRY_MAX;
        entries[n] = (struct virtio_gpu_mem_entry){ virt_to_phys((uint8_t *)b->ptr + at), (uint32_t)len, 0 };
    }
    b->id = c->gpu->next_res_id++;
    uint32_t st;
    if (mem == VGPU_MEM_GUEST) {
        st = virtio_gpu_create_blob(d, c->id, b->id, VIRTIO_GPU_BLOB_MEM_GUEST, 0, size, entries, n);
    } else {
        st = virtio_gpu_create_blob(d, c->id, b->id, VIRTIO_GPU_BLOB_MEM_HOST3D, 0, size, NULL, 0);
        if (st == 0)
            st = virtio_gpu_attach_backing(d, b->id, entries, n);
    }
    if (st == 0)
        st = virtio_gpu_ctx_attach(d, c->id, b->id, false);
    return st;
}

static uint32_t transfer(struct vgpu_buf *b, uint64_t offset, uint64_t len, bool to_host)
{
    if (offset > b->size || len > b->size - offset)
        return VIRTIO_GPU_STATUS_TOO_BIG;
    /* box.x and box.w are u32: move big ranges in pieces. */
    for (uint64_t done = 0; done < len; ) {
        uint64_t at = offset + done, chunk = len - done;
        if (chunk > ENTRY_MAX)
            chunk = ENTRY_MAX;
        if (at > UINT32_MAX)
            return VIRTIO_GPU_STATUS_TOO_BIG;
        uint32_t st = virtio_gpu_transfer(&b->ctx->gpu->dev, b->ctx->id, b->id, to_host, (uint32_t)at,
                                          (uint32_t)chunk, at);
        if (st)
            return st;
        done += chunk;
    }
    return 0;
}

uint32_t vgpu_buf_upload(struct vgpu_buf *b, uint64_t offset, uint64_t len)
{
    return transfer(b, offset, len, true);
}

uint32_t vgpu_buf_download(struct vgpu_buf *b, uint64_t offset, uint64_t len)
{
    return transfer(b, offset, len, false);
}

uint32_t vgpu_buf_destroy(struct vgpu_buf *b)
{
    return virtio_gpu_resource_unref(&b->ctx->gpu->dev, b->id);
}

/* ---- recording (the rest: vgpu_stream.c) ---- */

bool vgpu_stream_init(struct vgpu_stream *s, uint32_t cap)
{
    *s = (struct vgpu_stream){ 0 };
    if (cap < VGPU_STREAM_HEADER)
        return false;
    void *data = dma_alloc(cap, 64);
    return data && vgpu_stream_init_at(s, data, cap);
}

/* ---- running ---- */

uint32_t vgpu_submit(struct vgpu_ctx *c, struct vgpu_stream *s, struct vgpu_fence *f)
{
    *f = (struct vgpu_fence){ .ctx = c, .slot = -1 };
    if (!vgpu_stream_finish(s))
        return VIRTIO_GPU_STATUS_TOO_BIG;
    f->id = c->next_fence;
    int slot = virtio_gpu_submit_3d(&c->gpu->dev, c->id, c->ring, f->id, s->data, s->len);
    if (slot < 0)
        return (uint32_t)-slot;
    c->next_fence++;
    f->slot = slot;
    return 0;
}

bool vgpu_fence_done(struct vgpu_fence *f)
{
    return f->slot >= 0 && virtio_gpu_poll(&f->ctx->gpu->dev, f->slot);
}

uint32_t vgpu_wait(struct vgpu_fence *f)
{
    if (f->slot < 0)
        return VIRTIO_GPU_STATUS_TRANSPORT;
    /* Fences can take long: sleep between interrupts when the vGPU was opened with MSI-X. */
    uint32_t st = virtio_gpu_wait_sleep(&f->ctx->gpu->dev, f->slot, NULL, 0, NULL);
    f->slot = -1;
    if (st != VIRTIO_GPU_STATUS_TRANSPORT && f->id > f->ctx->last_signalled)
        f->ctx->last_signalled = f->id;
    return st;
}

uint32_t vgpu_run(struct vgpu_ctx *c, struct vgpu_stream *s)
{
    struct vgpu_fence f;
    uint32_t st = vgpu_submit(c, s, &f);
    return st ? st : vgpu_wait(&f);
}
