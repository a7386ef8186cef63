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

/* ---- recording ---- */

bool vgpu_stream_init(struct vgpu_stream *s, uint32_t cap)
{
    *s = (struct vgpu_stream){ 0 };
    if (cap < VGPU_STREAM_HEADER)
        return false;
    s->data = dma_alloc(cap, 64);
    if (!s->data)
        return false;
    s->cap = cap;
    vgpu_stream_reset(s);
    return true;
}

void vgpu_stream_reset(struct vgpu_stream *s)
{
    s->len = VGPU_STREAM_HEADER;
    s->count = 0;
    s->full = false;
}

bool vgpu_stream_finish(struct vgpu_stream *s)
{
    if (s->full || s->count == 0)
        return false;
    uint32_t magic = VGPU_STREAM_MAGIC, zero = 0;
    uint16_t version = VGPU_STREAM_VERSION, flags = 0;
    memcpy(s->data, &magic, 4);
    memcpy(s->data + 4, &version, 2);
    memcpy(s->data + 6, &flags, 2);
    memcpy(s->data + 8, &s->count, 4);
    memcpy(s->data + 12, &zero, 4);
    return true;
}

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static bool begin(struct vgpu_stream *s, uint16_t opcode, uint32_t body)
{
    if (s->full || body > s->cap || s->len > s->cap - 8 - body) {
        s->full = true;
        return false;
    }
    uint8_t *p = s->data + s->len;
    uint32_t len = 8 + body;
    uint16_t flags = 0;
    memcpy(p, &opcode, 2);
    memcpy(p + 2, &flags, 2);
    memcpy(p + 4, &len, 4);
    return true;
}

/* The usual layout: `nw` u32 scalars, then `nr` buffer refs (NULL ref: all zero). */
static bool emit(struct vgpu_stream *s, uint16_t opcode, const uint32_t *w, unsigned nw,
                 const struct vgpu_ref *const *refs, unsigned nr)
{
    uint32_t body = nw * 4 + nr * 16;
    if (!begin(s, opcode, body))
        return false;
    uint8_t *p = s->data + s->len + 8;
    memcpy(p, w, nw * 4);
    p += nw * 4;
    for (unsigned i = 0; i < nr; i++, p += 16) {
        struct vgpu_ref z = { 0 }, r = refs[i] ? *refs[i] : z;
        memcpy(p, &r.resource_id, 4);
        memcpy(p + 4, &r.length, 4);
        memcpy(p + 8, &r.offset, 8);
    }
    s->len += 8 + body;
    s->count++;
    return true;
}

bool vgpu_raw(struct vgpu_stream *s, uint16_t opcode, const void *body, uint32_t len)
{
    if (!begin(s, opcode, len))
        return false;
    memcpy(s->data + s->len + 8, body, len);
    s->len += 8 + len;
    s->count++;
    return true;
}

bool vgpu_sgemm(struct vgpu_stream *s, uint32_t m, uint32_t n, uint32_t k, uint32_t transpose, float alpha,
                float beta, struct vgpu_ref a, struct vgpu_ref b, struct vgpu_ref c)
{
    uint32_t w[] = { m, n, k, transpose, f32_bits(alpha), f32_bits(beta) };
    const struct vgpu_ref *r[] = { &a, &b, &c };
    return emit(s, VGPU_OP_SGEMM, w, 6, r, 3);
}

bool vgpu_bias_add(struct vgpu_stream *s, uint32_t outer, uint32_t channels, uint32_t inner, struct vgpu_ref data,
                   struct vgpu_ref bias)
{
    uint32_t w[] = { outer, channels, inner, 0 };
    const struct vgpu_ref *r[] = { &data, &bias };
    return emit(s, VGPU_OP_BIAS_ADD, w, 4, r, 2);
}

bool vgpu_activation(struct vgpu_stream *s, enum vgpu_activation act, uint32_t count, struct vgpu_ref input,
                     struct vgpu_ref output)
{
    uint32_t w[] = { act, count };
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_ACTIVATION, w, 2, r, 2);
}

bool vgpu_activation_backward(struct vgpu_stream *s, enum vgpu_activation act, uint32_t count,
                              struct vgpu_ref input, struct vgpu_ref output_grad, struct vgpu_ref input_grad)
{
    uint32_t w[] = { act, count };
    const struct vgpu_ref *r[] = { &input, &output_grad, &input_grad };
    return emit(s, VGPU_OP_ACTIVATION_BACKWARD, w, 2, r, 3);
}

bool vgpu_softmax(struct vgpu_stream *s, uint32_t rows, uint32_t columns, struct vgpu_ref input,
                  struct vgpu_ref output)
{
    uint32_t w[] = { rows, columns };
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_SOFTMAX, w, 2, r, 2);
}

bool vgpu_softmax_xent(struct vgpu_stream *s, uint32_t rows, uint32_t classes, float grad_scale,
                       struct vgpu_ref logits, struct vgpu_ref labels, struct vgpu_ref loss,
                       struct vgpu_ref logits_grad)
{
    uint32_t w[] = { rows, classes, f32_bits(grad_scale), 0 };
    const struct vgpu_ref *r[] = { &logits, &labels, &loss, &logits_grad };
    return emit(s, VGPU_OP_SOFTMAX_XENT, w, 4, r, 4);
}

bool vgpu_reduce(struct vgpu_stream *s, enum vgpu_reduce_op op, enum vgpu_axis axis, uint32_t rows,
                 uint32_t columns, struct vgpu_ref input, struct vgpu_ref output)
{
    uint32_t w[] = { op, axis, rows, columns };
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_REDUCE, w, 4, r, 2);
}

bool vgpu_axpy(struct vgpu_stream *s, uint32_t count, float alpha, struct vgpu_ref x, struct vgpu_ref y)
{
    uint32_t w[] = { count, f32_bits(alpha) };
    const struct vgpu_ref *r[] = { &x, &y };
    return emit(s, VGPU_OP_AXPY, w, 2, r, 2);
}

bool vgpu_scale(struct vgpu_stream *s, uint32_t count, float alpha, struct vgpu_ref x)
{
    uint32_t w[] = { count, f32_bits(alpha) };
    const struct vgpu_ref *r[] = { &x };
    return emit(s, VGPU_OP_SCALE, w, 2, r, 1);
}

static uint32_t out_extent(uint32_t size, uint32_t kernel, uint32_t stride, uint32_t pad)
{
    uint64_t padded = (uint64_t)size + 2ull * pad;
    if (stride == 0 || kernel == 0 || padded < kernel)
        return 0;
    return (uint32_t)((padded - kernel) / stride + 1);
}

uint32_t vgpu_conv_out_h(const struct vgpu_conv_shape *c)
{
    return out_extent(c->height, c->kernel_h, c->stride_y, c->pad_y);
}

uint32_t vgpu_conv_out_w(const struct vgpu_conv_shape *c)
{
    return out_extent(c->width, c->kernel_w, c->stride_x, c->pad_x);
}

/* The 11 shape words, then one more (flags or reserved). */
static void conv_words(uint32_t w[12], const struct vgpu_conv_shape *c, uint32_t last)
{
    uint32_t v[12] = { c->batch, c->in_channels, c->height, c->width, c->out_channels, c->kernel_h,
                       c->kernel_w, c->stride_y, c->stride_x, c->pad_y, c->pad_x, last };
    memcpy(w, v, sizeof v);
}

bool vgpu_conv2d_forward(struct vgpu_stream *s, const struct vgpu_conv_shape *shape, struct vgpu_ref input,
                         struct vgpu_ref weight, const struct vgpu_ref *bias, struct vgpu_ref output)
{
    uint32_t w[12];
    conv_words(w, shape, bias ? 1 : 0);
    const struct vgpu_ref *r[] = { &input, &weight, bias, &output };
    return emit(s, VGPU_OP_CONV2D_FORWARD, w, 12, r, 4);
}

bool vgpu_conv2d_backward_data(struct vgpu_stream *s, const struct vgpu_conv_shape *shape,
                               struct vgpu_ref output_grad, struct vgpu_ref weight, struct vgpu_ref input_grad)
{
    uint32_t w[12];
    conv_words(w, shape, 0);
    const struct vgpu_ref *r[] = { &output_grad, &weight, &input_grad };
    return emit(s, VGPU_OP_CONV2D_BACKWARD_DATA, w, 12, r, 3);
}

bool vgpu_conv2d_backward_filter(struct vgpu_stream *s, const struct vgpu_conv_shape *shape, struct vgpu_ref input,
                                 struct vgpu_ref output_grad, struct vgpu_ref weight_grad,
                                 const struct vgpu_ref *bias_grad)
{
    uint32_t w[12];
    conv_words(w, shape, bias_grad ? 1 : 0);
    const struct vgpu_ref *r[] = { &input, &output_grad, &weight_grad, bias_grad };
    return emit(s, VGPU_OP_CONV2D_BACKWARD_FILTER, w, 12, r, 4);
}

bool vgpu_normalize_u8(struct vgpu_stream *s, uint32_t batch, uint32_t height, uint32_t width, uint32_t channels,
                       float scale, const float *mean, const float *std, struct vgpu_ref input,
                       struct vgpu_ref output)
{
    uint32_t w[14] = { batch, height, width, channels, f32_bits(scale), 0 };
    /* Slots past `channels` must be zero. */
    for (uint32_t c = 0; c < 4 && c < channels; c++) {
        w[6 + c] = f32_bits(mean[c]);
        w[10 + c] = f32_bits(std[c]);
    }
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_NORMALIZE_U8, w, 14, r, 2);
}

bool vgpu_crop(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height, uint32_t width,
               uint32_t top, uint32_t left, uint32_t out_h, uint32_t out_w, struct vgpu_ref input,
               struct vgpu_ref output)
{
    uint32_t w[] = { batch, channels, height, width, top, left, out_h, out_w };
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_CROP, w, 8, r, 2);
}

bool vgpu_flip_horizontal(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                          uint32_t width, struct vgpu_ref input, struct vgpu_ref output)
{
    uint32_t w[] = { batch, channels, height, width };
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_FLIP_HORIZONTAL, w, 4, r, 2);
}

bool vgpu_resize_bilinear(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                          uint32_t width, uint32_t out_h, uint32_t out_w, struct vgpu_ref input,
                          struct vgpu_ref output)
{
    uint32_t w[] = { batch, channels, height, width, out_h, out_w };
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_RESIZE_BILINEAR, w, 6, r, 2);
}

bool vgpu_copy(struct vgpu_stream *s, struct vgpu_ref source, struct vgpu_ref destination)
{
    const struct vgpu_ref *r[] = { &source, &destination };
    return emit(s, VGPU_OP_COPY, NULL, 0, r, 2);
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
