/*
 * The recording half of the vGPU client library: command stream v1
 * (docs/vgpu-protocol.md) written into a caller's buffer. It needs nothing
 * but memcpy, so a hosted compiler builds it too: the host test
 * Tests/VirtioGPUTests/ComputeStreamAgreementTests.swift compiles this file
 * with Tests/VirtioGPUTests/Fixtures/stream_golden.c and checks the bytes
 * against the VMM's decoder and the tests' encoder. Keep it free of other
 * guest dependencies (DMA memory, the console, the device): those belong in
 * vgpu.c.
 */
#include "malv/vgpu.h"
#include "malv/string.h"

bool vgpu_stream_init_at(struct vgpu_stream *s, void *data, uint32_t cap)
{
    *s = (struct vgpu_stream){ 0 };
    if (cap < VGPU_STREAM_HEADER || !data)
        return false;
    s->data = data;
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

bool vgpu_maxpool2d_forward(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                            uint32_t width, struct vgpu_ref input, struct vgpu_ref output)
{
    uint32_t w[] = { batch, channels, height, width };
    const struct vgpu_ref *r[] = { &input, &output };
    return emit(s, VGPU_OP_MAXPOOL2D_FORWARD, w, 4, r, 2);
}

bool vgpu_maxpool2d_backward(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                             uint32_t width, struct vgpu_ref input, struct vgpu_ref output_grad,
                             struct vgpu_ref input_grad)
{
    uint32_t w[] = { batch, channels, height, width };
    const struct vgpu_ref *r[] = { &input, &output_grad, &input_grad };
    return emit(s, VGPU_OP_MAXPOOL2D_BACKWARD, w, 4, r, 3);
}
