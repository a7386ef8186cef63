/*
 * The vGPU client library: what an ML program in the guest uses to compute
 * on malvvm's para-vGPU (docs/vgpu-protocol.md) through lib/virtio_gpu.c.
 *
 *   struct vgpu gpu;        vgpu_open(&gpu, 0)
 *   struct vgpu_ctx ctx;    vgpu_ctx_create(&gpu, &ctx, "train", 0)
 *   struct vgpu_buf w;      vgpu_buf_create(&ctx, &w, bytes, VGPU_MEM_GUEST)
 *   fill vgpu_f32p(&w) ...  (GUEST blobs: the pages are the blob; no upload needed)
 *   struct vgpu_stream s;   vgpu_stream_init(&s, 64 << 10)
 *   vgpu_sgemm(&s, ...); vgpu_relu(&s, ...); ...     record a batch
 *   vgpu_run(&ctx, &s)      one SUBMIT_3D, fenced; returns when it is done
 *   read vgpu_f32p(&out) ...
 *
 * Memory kinds: VGPU_MEM_GUEST blobs live in guest pages that the device
 * syncs around each submission (the ranges kernels read are copied in, the
 * ranges they write copied back), so the CPU sees results right after the
 * fence. VGPU_MEM_HOST blobs live in GPU memory only; `ptr` is a staging area
 * of the same size, moved with vgpu_buf_upload/vgpu_buf_download.
 *
 * Every call that talks to the device returns a status: 0 on success, the
 * device's VIRTIO_GPU_RESP_ERR_* code, or a VIRTIO_GPU_STATUS_* driver code
 * (vgpu_status_name names both). Recording helpers return false when the
 * stream is full (or already failed); nothing is recorded then.
 */
#ifndef MALV_VGPU_H
#define MALV_VGPU_H

#include <stdbool.h>
#include <stdint.h>

#include "malv/virtio_gpu.h"

/* Command stream v1 */
#define VGPU_STREAM_MAGIC   0x4347564du    /* "MVGC" */
#define VGPU_STREAM_VERSION 1
#define VGPU_STREAM_HEADER  16

enum vgpu_opcode {
    VGPU_OP_SGEMM = 1,
    VGPU_OP_BIAS_ADD = 2,
    VGPU_OP_ACTIVATION = 3,
    VGPU_OP_ACTIVATION_BACKWARD = 4,
    VGPU_OP_SOFTMAX = 5,
    VGPU_OP_SOFTMAX_XENT = 6,
    VGPU_OP_REDUCE = 7,
    VGPU_OP_AXPY = 8,
    VGPU_OP_SCALE = 9,
    VGPU_OP_CONV2D_FORWARD = 10,
    VGPU_OP_CONV2D_BACKWARD_DATA = 11,
    VGPU_OP_CONV2D_BACKWARD_FILTER = 12,
    VGPU_OP_NORMALIZE_U8 = 13,
    VGPU_OP_CROP = 14,
    VGPU_OP_FLIP_HORIZONTAL = 15,
    VGPU_OP_RESIZE_BILINEAR = 16,
    VGPU_OP_COPY = 17,
    VGPU_OP_MAXPOOL2D_FORWARD = 18,
    VGPU_OP_MAXPOOL2D_BACKWARD = 19,
    VGPU_OP_COUNT = 20,
};

enum vgpu_activation { VGPU_RELU = 0, VGPU_GELU = 1 };   /* GELU: the tanh approximation */
enum vgpu_reduce_op { VGPU_SUM = 0, VGPU_MAX = 1 };
enum vgpu_axis { VGPU_PER_ROW = 0, VGPU_PER_COLUMN = 1 };
#define VGPU_TRANSPOSE_A 1u
#define VGPU_TRANSPOSE_B 2u

enum vgpu_mem { VGPU_MEM_GUEST = VIRTIO_GPU_BLOB_MEM_GUEST, VGPU_MEM_HOST = VIRTIO_GPU_BLOB_MEM_HOST3D };

struct vgpu {
    struct virtio_gpu dev;
    uint32_t next_ctx_id, next_res_id;
};

struct vgpu_ctx {
    struct vgpu *gpu;
    uint32_t id;
    int ring;                   /* fence timeline: ring index of this context, or -1 (device-wide) */
    uint64_t next_fence;
    uint64_t last_signalled;    /* highest fence whose response arrived */
};

struct vgpu_buf {
    struct vgpu_ctx *ctx;       /* owner */
    uint32_t id;
    uint32_t mem;               /* enum vgpu_mem */
    uint64_t size;              /* bytes */
    uint64_t base;              /* offset of byte 0 in references: 0, or the GPU address on the full-vGPU */
    void *ptr;                  /* the guest pages (GUEST) or staging pages (HOST), page-aligned */
};

/* A range of a blob that a command names (struct buffer_ref on the wire). */
struct vgpu_ref {
    uint32_t resource_id;
    uint32_t length;            /* bytes */
    uint64_t offset;            /* bytes */
};

struct vgpu_stream {
    uint8_t *data;              /* header, then commands (DMA memory) */
    uint32_t cap, len, count;
    bool full;                  /* a helper did not fit: the batch is incomplete */
    /* Full-vGPU only (fullvgpu.c): where `data` is mapped, and in which GPU page tables. */
    const void *gpu_tables;
    uint64_t gpu_address;
};

/* A submitted batch, until vgpu_wait. */
struct vgpu_fence {
    struct vgpu_ctx *ctx;
    int slot;
    uint64_t id;
};

/* Finds and opens the nth vGPU (virtio-gpu with the compute capset). NULL on success. */
const char *vgpu_open(struct vgpu *g, unsigned nth);
/*
 * The same, with control-queue completions on MSI-X `vector` (and vector + 1
 * for config changes): vgpu_wait then sleeps the vCPU between interrupts
 * instead of spinning. Every other request still polls.
 */
const char *vgpu_open_msix(struct vgpu *g, unsigned nth, uint8_t vector);
static inline const struct virtio_gpu_compute_capset *vgpu_capset(const struct vgpu *g)
{
    return &g->dev.capset;
}
static inline bool vgpu_supports(const struct vgpu *g, unsigned opcode)
{
    return opcode < 32 && (g->dev.capset.opcode_mask >> opcode & 1);
}
const char *vgpu_status_name(uint32_t status);
/* "program: what: STATUS", with the device's reason when the transport broke (e.g. DEVICE_NEEDS_RESET). */
void vgpu_print_failure(const char *program, const char *what, const struct vgpu *g, uint32_t status);

/*
 * MLaaS (capset version 2, docs/vgpu-protocol.md "MLaaS requests"): the
 * services this VM is permitted. Each call returns a status; on a device error
 * `err` (may be NULL) gets the reason code and the device's one-line message.
 */
enum vgpu_mlaas_status {
    VGPU_MLAAS_MALFORMED = 1, VGPU_MLAAS_UNKNOWN = 2, VGPU_MLAAS_NOT_PERMITTED = 3, VGPU_MLAAS_NOT_LOADED = 4,
    VGPU_MLAAS_REFUSED = 5, VGPU_MLAAS_NOT_ENABLED = 6, VGPU_MLAAS_UNAVAILABLE = 7, VGPU_MLAAS_INTERNAL = 8,
};
struct vgpu_mlaas_error {
    uint32_t status;            /* enum vgpu_mlaas_status, 0 if the device gave none */
    char message[VIRTIO_GPU_MLAAS_MAX_MESSAGE + 1];
};
struct vgpu_mlaas_service {
    char name[VIRTIO_GPU_MLAAS_NAME_BYTES + 1];
    uint32_t kind;              /* 1 OS-for-ML, 2 ML-for-OS, 0 not loaded */
    bool loaded, enabled;
};
/* Whether the device offers capset version 2 with the MLaaS flag set (asks GET_CAPSET v2). */
bool vgpu_mlaas_available(struct vgpu *g);
/* Up to `cap` (<= 8) services into `out`; `*count` listed, `*total` permitted. */
uint32_t vgpu_mlaas_list(struct vgpu *g, struct vgpu_mlaas_service *out, uint32_t cap, uint32_t *count,
                         uint32_t *total, struct vgpu_mlaas_error *err);
/* `params` (len <= 4096 bytes, the service's own format) go to the service's configure. */
uint32_t vgpu_mlaas_enable(struct vgpu *g, const char *name, const void *params, uint32_t len,
                           struct vgpu_mlaas_error *err);
uint32_t vgpu_mlaas_disable(struct vgpu *g, const char *name, struct vgpu_mlaas_error *err);
/*
 * A request (len <= 4096 bytes, the service's own format) to a service this
 * guest enabled; up to `cap` (<= VGPU_MLAAS_MAX_ANSWER) answer bytes into
 * `answer`, their count in `*answer_len`.
 */
#define VGPU_MLAAS_MAX_ANSWER (VIRTIO_GPU_RESP_BYTES - 32)
uint32_t vgpu_mlaas_request(struct vgpu *g, const char *name, const void *request, uint32_t len, void *answer,
                            uint32_t cap, uint32_t *answer_len, struct vgpu_mlaas_error *err);
const char *vgpu_mlaas_status_name(uint32_t status);

/* A context (GPU scheduler client) with the next free id; fences on `ring` (-1: device-wide). */
uint32_t vgpu_ctx_create(struct vgpu *g, struct vgpu_ctx *c, const char *name, int ring);
uint32_t vgpu_ctx_destroy(struct vgpu_ctx *c);

/*
 * A blob of `size` bytes owned by and attached to `c`. Its pages come from
 * dma_alloc (never freed: allocate once, reuse).
 */
uint32_t vgpu_buf_create(struct vgpu_ctx *c, struct vgpu_buf *b, uint64_t size, enum vgpu_mem mem);
/* Moves bytes [offset, offset+len) from ptr to the GPU copy, or back. */
uint32_t vgpu_buf_upload(struct vgpu_buf *b, uint64_t offset, uint64_t len);
uint32_t vgpu_buf_download(struct vgpu_buf *b, uint64_t offset, uint64_t len);
/* RESOURCE_UNREF; the pages are not reused by the library. */
uint32_t vgpu_buf_destroy(struct vgpu_buf *b);

static inline float *vgpu_f32p(const struct vgpu_buf *b) { return (float *)b->ptr; }
/* `count` f32 (or u32) elements from element `first`. */
static inline struct vgpu_ref vgpu_f32(const struct vgpu_buf *b, uint64_t first, uint32_t count)
{
    return (struct vgpu_ref){ b->id, count * 4u, b->base + first * 4u };
}
/* Raw bytes (u8 inputs of normalize). */
static inline struct vgpu_ref vgpu_bytes(const struct vgpu_buf *b, uint64_t offset, uint32_t len)
{
    return (struct vgpu_ref){ b->id, len, b->base + offset };
}

/* ---- recording ---- */

/* A stream buffer of `cap` bytes (DMA memory). False if out of memory. */
bool vgpu_stream_init(struct vgpu_stream *s, uint32_t cap);
/*
 * A stream over the caller's `cap` bytes at `data` (the device must be able
 * to read them when it is submitted). False if `cap` cannot hold the header.
 * The recording functions below (lib/vgpu_stream.c) need nothing else, so a
 * host program can build them to check the layouts (see docs/vgpu-protocol.md).
 */
bool vgpu_stream_init_at(struct vgpu_stream *s, void *data, uint32_t cap);
void vgpu_stream_reset(struct vgpu_stream *s);
/* Writes the header (magic, version, count) before sending; false if the stream is full or empty. */
bool vgpu_stream_finish(struct vgpu_stream *s);

/* C = alpha * op(A) * op(B) + beta * C; op(A) m x k, op(B) k x n, row-major; transpose = VGPU_TRANSPOSE_*. */
bool vgpu_sgemm(struct vgpu_stream *s, uint32_t m, uint32_t n, uint32_t k, uint32_t transpose, float alpha,
                float beta, struct vgpu_ref a, struct vgpu_ref b, struct vgpu_ref c);
/* data[o][c][i] += bias[c] */
bool vgpu_bias_add(struct vgpu_stream *s, uint32_t outer, uint32_t channels, uint32_t inner, struct vgpu_ref data,
                   struct vgpu_ref bias);
/* output = f(input), in place allowed */
bool vgpu_activation(struct vgpu_stream *s, enum vgpu_activation act, uint32_t count, struct vgpu_ref input,
                     struct vgpu_ref output);
static inline bool vgpu_relu(struct vgpu_stream *s, uint32_t count, struct vgpu_ref in, struct vgpu_ref out)
{
    return vgpu_activation(s, VGPU_RELU, count, in, out);
}
static inline bool vgpu_gelu(struct vgpu_stream *s, uint32_t count, struct vgpu_ref in, struct vgpu_ref out)
{
    return vgpu_activation(s, VGPU_GELU, count, in, out);
}
/* input_grad = f'(input) * output_grad (input: the pre-activation value) */
bool vgpu_activation_backward(struct vgpu_stream *s, enum vgpu_activation act, uint32_t count,
                              struct vgpu_ref input, struct vgpu_ref output_grad, struct vgpu_ref input_grad);
/* row-wise softmax of rows x columns */
bool vgpu_softmax(struct vgpu_stream *s, uint32_t rows, uint32_t columns, struct vgpu_ref input,
                  struct vgpu_ref output);
/* loss[r] = logsumexp(logits[r]) - logits[r][label[r]]; grad = (softmax - onehot) * grad_scale; labels u32 */
bool vgpu_softmax_xent(struct vgpu_stream *s, uint32_t rows, uint32_t classes, float grad_scale,
                       struct vgpu_ref logits, struct vgpu_ref labels, struct vgpu_ref loss,
                       struct vgpu_ref logits_grad);
/* sum or max of a rows x columns matrix, per row (out: rows) or per column (out: columns) */
bool vgpu_reduce(struct vgpu_stream *s, enum vgpu_reduce_op op, enum vgpu_axis axis, uint32_t rows,
                 uint32_t columns, struct vgpu_ref input, struct vgpu_ref output);
/* y += alpha * x */
bool vgpu_axpy(struct vgpu_stream *s, uint32_t count, float alpha, struct vgpu_ref x, struct vgpu_ref y);
/* x *= alpha */
bool vgpu_scale(struct vgpu_stream *s, uint32_t count, float alpha, struct vgpu_ref x);

/* NCHW input, KCRS weight, NKPQ output; P = (H + 2 pad_y - R) / stride_y + 1, Q likewise. */
struct vgpu_conv_shape {
    uint32_t batch, in_channels, height, width;
    uint32_t out_channels, kernel_h, kernel_w;
    uint32_t stride_y, stride_x, pad_y, pad_x;
};
uint32_t vgpu_conv_out_h(const struct vgpu_conv_shape *c);
uint32_t vgpu_conv_out_w(const struct vgpu_conv_shape *c);
/* bias may be NULL */
bool vgpu_conv2d_forward(struct vgpu_stream *s, const struct vgpu_conv_shape *shape, struct vgpu_ref input,
                         struct vgpu_ref weight, const struct vgpu_ref *bias, struct vgpu_ref output);
bool vgpu_conv2d_backward_data(struct vgpu_stream *s, const struct vgpu_conv_shape *shape,
                               struct vgpu_ref output_grad, struct vgpu_ref weight, struct vgpu_ref input_grad);
/* bias_grad may be NULL */
bool vgpu_conv2d_backward_filter(struct vgpu_stream *s, const struct vgpu_conv_shape *shape, struct vgpu_ref input,
                                 struct vgpu_ref output_grad, struct vgpu_ref weight_grad,
                                 const struct vgpu_ref *bias_grad);
/* NHWC u8 -> NCHW f32: out = (in * scale - mean[c]) / std[c]; channels 1..4 */
bool vgpu_normalize_u8(struct vgpu_stream *s, uint32_t batch, uint32_t height, uint32_t width, uint32_t channels,
                       float scale, const float *mean, const float *std, struct vgpu_ref input,
                       struct vgpu_ref output);
/* NCHW f32 crop of out_h x out_w at (top, left) */
bool vgpu_crop(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height, uint32_t width,
               uint32_t top, uint32_t left, uint32_t out_h, uint32_t out_w, struct vgpu_ref input,
               struct vgpu_ref output);
bool vgpu_flip_horizontal(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                          uint32_t width, struct vgpu_ref input, struct vgpu_ref output);
/* bilinear, half-pixel centres (PyTorch align_corners=False) */
bool vgpu_resize_bilinear(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                          uint32_t width, uint32_t out_h, uint32_t out_w, struct vgpu_ref input,
                          struct vgpu_ref output);
/* 4-byte words, same length, no overlap */
bool vgpu_copy(struct vgpu_stream *s, struct vgpu_ref source, struct vgpu_ref destination);
/*
 * 2x2 stride-2 max pool of NCHW f32, output batch x channels x (height / 2) x (width / 2)
 * (rounded down). A window's maximum is its first largest element in row-major order
 * (ties: the first; a later element wins only when strictly greater); backward sends each
 * output gradient to that element, recomputed from `input` (the forward's input), and
 * writes 0 everywhere else.
 */
bool vgpu_maxpool2d_forward(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                            uint32_t width, struct vgpu_ref input, struct vgpu_ref output);
bool vgpu_maxpool2d_backward(struct vgpu_stream *s, uint32_t batch, uint32_t channels, uint32_t height,
                             uint32_t width, struct vgpu_ref input, struct vgpu_ref output_grad,
                             struct vgpu_ref input_grad);
/* Any command: head (opcode, length = 8 + len) then `len` bytes of body. For tests of refusals. */
bool vgpu_raw(struct vgpu_stream *s, uint16_t opcode, const void *body, uint32_t len);

/* ---- running ---- */

/*
 * Submits the recorded batch as one fenced SUBMIT_3D (the next fence of the
 * context's timeline) and returns without waiting. The stream must not be
 * changed until vgpu_wait. A stream that is full or empty is not sent
 * (VIRTIO_GPU_STATUS_TOO_BIG).
 */
uint32_t vgpu_submit(struct vgpu_ctx *c, struct vgpu_stream *s, struct vgpu_fence *f);
/* Waits for the batch's fenced response: 0 when it ran, else why not. */
uint32_t vgpu_wait(struct vgpu_fence *f);
/* Whether the fence has signalled (never waits). */
bool vgpu_fence_done(struct vgpu_fence *f);
/* submit + wait */
uint32_t vgpu_run(struct vgpu_ctx *c, struct vgpu_stream *s);

#endif
