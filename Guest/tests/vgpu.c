/*
 * test=vgpu: the para-vGPU end to end through lib/vgpu.c. Every opcode of
 * compute stream v1 the capset offers runs on the vGPU on deterministic
 * pseudo-random inputs (odd sizes 1, 7, 33 among them) and is compared with
 * the same computation on the guest CPU in plain C (double accumulation,
 * libm-free exp/log/tanh below). One line per kernel and shape:
 *   vgpu: <kernel> <shape> ... ok (max err X)
 * where the error is max |gpu - cpu| / max(1, |cpu|) and must stay within
 * the kernel's stated tolerance (0 for data movement, 1e-6 for one rounding,
 * 1e-5 for exp/tanh-based kernels, 1e-4 for long dot products).
 *
 * Then: HOST3D blobs with explicit transfers; one SUBMIT_3D carrying the
 * capset's max_commands commands; two contexts whose submissions are in
 * flight together on their own fence rings; refused submissions (another
 * context's resource, an unknown resource, an unknown opcode, a wrong
 * length) while the other context keeps computing correctly; teardown.
 * Final line `vgpu: N passed, M failed`; exit 0 only if all passed.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/cpuref.h"
#include "malv/format.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/vgpu.h"

#define BUF_FLOATS (64u * 1024u)
#define BUF_BYTES (BUF_FLOATS * 4u)
#define NBUF 6

static struct vgpu gpu;
static struct vgpu_ctx ctx_a, ctx_b;
static struct vgpu_buf buf[NBUF];       /* context A's workspace, GUEST blobs */
static struct vgpu_stream stream;
static float *ref0, *ref1;              /* CPU results */
static unsigned passed, failed;
static uint64_t rng_state;

/* ---- libm-free math (double; ~1e-15 relative in the ranges used) ---- */

static double m_ldexp(double x, int e)
{
    while (e > 1000) { x *= 0x1p1000; e -= 1000; }
    while (e < -1000) { x *= 0x1p-1000; e += 1000; }
    union { double d; uint64_t u; } s = { .u = (uint64_t)(e + 1023) << 52 };
    return x * s.d;
}

static double m_exp(double x)
{
    if (x > 700)
        return 1e300;
    if (x < -700)
        return 0;
    /* x = k ln2 + r, |r| <= ln2/2; Taylor to r^14. */
    double kf = x * 1.4426950408889634;
    int k = (int)(kf < 0 ? kf - 0.5 : kf + 0.5);
    double r = x - k * 0.6931471805599453;
    double term = 1, sum = 1;
    for (int i = 1; i <= 14; i++) {
        term *= r / i;
        sum += term;
    }
    return m_ldexp(sum, k);
}

static double m_log(double x)
{
    if (x <= 0)
        return -1e300;
    union { double d; uint64_t u; } v = { .d = x };
    int e = (int)((v.u >> 52) & 0x7ff) - 1023;
    v.u = (v.u & ~(0x7ffull << 52)) | (1023ull << 52);     /* mantissa in [1, 2) */
    double m = v.d;
    if (m > 1.4142135623730951) {
        m /= 2;
        e++;
    }
    /* log m = 2 atanh(s), s = (m-1)/(m+1), |s| < 0.172 */
    double s = (m - 1) / (m + 1), s2 = s * s, term = s, sum = 0;
    for (int i = 1; i < 40; i += 2) {
        sum += term / i;
        term *= s2;
    }
    return 2 * sum + e * 0.6931471805599453;
}

static double m_tanh(double x)
{
    if (x > 20)
        return 1;
    if (x < -20)
        return -1;
    double e = m_exp(2 * x);
    return (e - 1) / (e + 1);
}

static double m_fabs(double x) { return x < 0 ? -x : x; }

/* ---- inputs ---- */

static uint64_t next_u64(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rnd(float lo, float hi)
{
    return lo + (hi - lo) * (float)(next_u64() >> 40) * (1.0f / 16777216.0f);
}

static void fill(float *p, unsigned n, float lo, float hi)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = rnd(lo, hi);
}

/* NaN in outputs, so a kernel that wrote nothing cannot pass. */
static void poison(float *p, unsigned n)
{
    union { float f; uint32_t u; } nan = { .u = 0x7fc00bad };
    for (unsigned i = 0; i < n; i++)
        p[i] = nan.f;
}

static float *B(unsigned i) { return vgpu_f32p(&buf[i]); }
static struct vgpu_ref R(unsigned i, uint32_t count) { return vgpu_f32(&buf[i], 0, count); }

/* ---- reporting ---- */

static void result(bool ok, const char *kernel, const char *shape, const char *detail)
{
    printf("vgpu: %-24s %-34s ... %s (%s)\n", kernel, shape, ok ? "ok" : "FAILED", detail);
    if (ok)
        passed++;
    else
        failed++;
}

/* Max of |got - want| / max(1, |want|); NaN anywhere counts as infinite. */
static double max_err(const float *got, const float *want, unsigned n)
{
    double worst = 0;
    for (unsigned i = 0; i < n; i++) {
        double g = got[i], w = want[i];
        if (g != g || w != w)
            return 1e30;
        double d = m_fabs(g - w) / (m_fabs(w) > 1 ? m_fabs(w) : 1);
        if (d > worst)
            worst = d;
    }
    return worst;
}

/* Runs the recorded stream on A, then compares up to two outputs. */
static void run_check(const char *kernel, const char *shape, double tol, const float *got0, const float *want0,
                      unsigned n0, const float *got1, const float *want1, unsigned n1)
{
    char detail[96];
    uint32_t st = vgpu_run(&ctx_a, &stream);
    if (st) {
        snprintf(detail, sizeof detail, "submit: %s", vgpu_status_name(st));
        result(false, kernel, shape, detail);
        return;
    }
    double err = max_err(got0, want0, n0);
    if (got1) {
        double e1 = max_err(got1, want1, n1);
        if (e1 > err)
            err = e1;
    }
    snprintf(detail, sizeof detail, "max err %.1e, tol %.0e", err, tol);
    result(err <= tol, kernel, shape, detail);
}

/* ---- the kernels, one function per opcode ---- */

static void t_sgemm(uint32_t m, uint32_t n, uint32_t k, uint32_t tr, float alpha, float beta)
{
    float *a = B(0), *b = B(1), *c = B(2);
    fill(a, m * k, -1, 1);
    fill(b, k * n, -1, 1);
    if (beta != 0)
        fill(c, m * n, -1, 1);
    else
        poison(c, m * n);
    cpuref_sgemm(m, n, k, tr, alpha, beta, a, b, c, ref0);
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, m, n, k, tr, alpha, beta, R(0, m * k), R(1, k * n), R(2, m * n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%u%s%s a=%.2f b=%.2f", m, n, k, tr & 1 ? " tA" : "", tr & 2 ? " tB" : "",
             (double)alpha, (double)beta);
    run_check("sgemm", shape, 1e-4, c, ref0, m * n, NULL, NULL, 0);
}

static void t_bias_add(uint32_t outer, uint32_t ch, uint32_t inner)
{
    uint32_t n = outer * ch * inner;
    fill(B(0), n, -1, 1);
    fill(B(1), ch, -1, 1);
    for (uint32_t i = 0; i < n; i++)
        ref0[i] = B(0)[i] + B(1)[(i / inner) % ch];
    vgpu_stream_reset(&stream);
    vgpu_bias_add(&stream, outer, ch, inner, R(0, n), R(1, ch));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%u", outer, ch, inner);
    run_check("bias_add", shape, 1e-6, B(0), ref0, n, NULL, NULL, 0);
}

static const double SQRT_2_OVER_PI = 0.7978845608028654, GELU_C = 0.044715;

static float gelu_ref(float v)
{
    double x = v;
    return (float)(0.5 * x * (1 + m_tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x))));
}

static float gelu_grad_ref(float v, float g)
{
    double x = v, t = m_tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x));
    double du = SQRT_2_OVER_PI * (1 + 3 * GELU_C * x * x);
    return (float)(g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du));
}

static void t_activation(enum vgpu_activation act, uint32_t n, bool in_place)
{
    fill(B(0), n, -5, 5);
    for (uint32_t i = 0; i < n; i++)
        ref0[i] = act == VGPU_RELU ? (B(0)[i] > 0 ? B(0)[i] : 0) : gelu_ref(B(0)[i]);
    unsigned out = in_place ? 0 : 1;
    if (!in_place)
        poison(B(1), n);
    vgpu_stream_reset(&stream);
    vgpu_activation(&stream, act, n, R(0, n), R(out, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u%s", n, in_place ? " in-place" : "");
    run_check(act == VGPU_RELU ? "relu" : "gelu", shape, act == VGPU_RELU ? 0 : 1e-5, B(out), ref0, n, NULL,
              NULL, 0);
}

static void t_activation_backward(enum vgpu_activation act, uint32_t n)
{
    fill(B(0), n, -5, 5);
    fill(B(1), n, -1, 1);
    poison(B(2), n);
    for (uint32_t i = 0; i < n; i++)
        ref0[i] = act == VGPU_RELU ? (B(0)[i] > 0 ? B(1)[i] : 0) : gelu_grad_ref(B(0)[i], B(1)[i]);
    vgpu_stream_reset(&stream);
    vgpu_activation_backward(&stream, act, n, R(0, n), R(1, n), R(2, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u", n);
    run_check(act == VGPU_RELU ? "relu_backward" : "gelu_backward", shape, act == VGPU_RELU ? 0 : 1e-5, B(2),
              ref0, n, NULL, NULL, 0);
}

static void t_softmax(uint32_t rows, uint32_t cols)
{
    uint32_t n = rows * cols;
    fill(B(0), n, -8, 8);
    poison(B(1), n);
    for (uint32_t r = 0; r < rows; r++) {
        const float *x = B(0) + r * cols;
        double mx = x[0], total = 0;
        for (uint32_t j = 1; j < cols; j++)
            mx = x[j] > mx ? x[j] : mx;
        for (uint32_t j = 0; j < cols; j++)
            total += m_exp(x[j] - mx);
        for (uint32_t j = 0; j < cols; j++)
            ref0[r * cols + j] = (float)(m_exp(x[j] - mx) / total);
    }
    vgpu_stream_reset(&stream);
    vgpu_softmax(&stream, rows, cols, R(0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%u", rows, cols);
    run_check("softmax", shape, 1e-5, B(1), ref0, n, NULL, NULL, 0);
}

static void t_softmax_xent(uint32_t rows, uint32_t classes)
{
    uint32_t n = rows * classes;
    float scale = 1.0f / (float)rows;
    uint32_t *labels = (uint32_t *)B(1);
    fill(B(0), n, -8, 8);
    for (uint32_t r = 0; r < rows; r++)
        labels[r] = (uint32_t)(next_u64() % classes);
    poison(B(2), rows);
    poison(B(3), n);
    for (uint32_t r = 0; r < rows; r++) {
        const float *x = B(0) + r * classes;
        double mx = x[0], total = 0;
        for (uint32_t j = 1; j < classes; j++)
            mx = x[j] > mx ? x[j] : mx;
        for (uint32_t j = 0; j < classes; j++)
            total += m_exp(x[j] - mx);
        for (uint32_t j = 0; j < classes; j++)
            ref1[r * classes + j] =
                (float)((m_exp(x[j] - mx) / total - (j == labels[r] ? 1.0 : 0.0)) * scale);
        ref0[r] = (float)(mx + m_log(total) - x[labels[r]]);
    }
    vgpu_stream_reset(&stream);
    vgpu_softmax_xent(&stream, rows, classes, scale, R(0, n), R(1, rows), R(2, rows), R(3, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%u", rows, classes);
    run_check("softmax_xent", shape, 1e-5, B(2), ref0, rows, B(3), ref1, n);
}

static void t_reduce(enum vgpu_reduce_op op, enum vgpu_axis axis, uint32_t rows, uint32_t cols)
{
    fill(B(0), rows * cols, -1, 1);
    uint32_t outer = axis == VGPU_PER_ROW ? rows : cols, inner = axis == VGPU_PER_ROW ? cols : rows;
    poison(B(1), outer);
    for (uint32_t o = 0; o < outer; o++) {
        double sum = 0;
        float mx = -1e30f;
        for (uint32_t i = 0; i < inner; i++) {
            float v = axis == VGPU_PER_ROW ? B(0)[o * cols + i] : B(0)[i * cols + o];
            sum += v;
            mx = v > mx ? v : mx;
        }
        ref0[o] = op == VGPU_SUM ? (float)sum : mx;
    }
    vgpu_stream_reset(&stream);
    vgpu_reduce(&stream, op, axis, rows, cols, R(0, rows * cols), R(1, outer));
    char name[32], shape[64];
    snprintf(name, sizeof name, "reduce_%s_%s", op == VGPU_SUM ? "sum" : "max", axis == VGPU_PER_ROW ? "rows" : "cols");
    snprintf(shape, sizeof shape, "%ux%u", rows, cols);
    run_check(name, shape, op == VGPU_SUM ? 1e-5 : 0, B(1), ref0, outer, NULL, NULL, 0);
}

static void t_axpy_scale(bool axpy, uint32_t n)
{
    float alpha = axpy ? 0.75f : -1.25f;
    fill(B(0), n, -1, 1);
    fill(B(1), n, -1, 1);
    for (uint32_t i = 0; i < n; i++)
        ref0[i] = axpy ? alpha * B(0)[i] + B(1)[i] : alpha * B(0)[i];
    vgpu_stream_reset(&stream);
    if (axpy)
        vgpu_axpy(&stream, n, alpha, R(0, n), R(1, n));
    else
        vgpu_scale(&stream, n, alpha, R(0, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u a=%.2f", n, (double)alpha);
    run_check(axpy ? "axpy" : "scale", shape, axpy ? 1e-6 : 0, axpy ? B(1) : B(0), ref0, n, NULL, NULL, 0);
}

/* ---- convolutions ---- */

struct conv_case {
    struct vgpu_conv_shape s;
    bool bias;
};

static void conv_dims(const struct vgpu_conv_shape *s, uint32_t *in, uint32_t *w, uint32_t *out)
{
    *in = s->batch * s->in_channels * s->height * s->width;
    *w = s->out_channels * s->in_channels * s->kernel_h * s->kernel_w;
    *out = s->batch * s->out_channels * vgpu_conv_out_h(s) * vgpu_conv_out_w(s);
}

/*
 * Calls `tap(n, k, p, q, in_index, w_index)` for every (output, input, weight)
 * triple of the convolution: forward and both backward passes are sums over it.
 */
#define CONV_FOR_EACH(s, BODY)                                                                   \
    do {                                                                                         \
        uint32_t P_ = vgpu_conv_out_h(s), Q_ = vgpu_conv_out_w(s);                               \
        for (uint32_t n = 0; n < (s)->batch; n++)                                                \
            for (uint32_t k = 0; k < (s)->out_channels; k++)                                     \
                for (uint32_t p = 0; p < P_; p++)                                                \
                    for (uint32_t q = 0; q < Q_; q++) {                                          \
                        uint32_t oi = ((n * (s)->out_channels + k) * P_ + p) * Q_ + q;           \
                        (void)oi;                                                                \
                        for (uint32_t c = 0; c < (s)->in_channels; c++)                          \
                            for (uint32_t r = 0; r < (s)->kernel_h; r++) {                       \
                                int h = (int)(p * (s)->stride_y + r) - (int)(s)->pad_y;          \
                                if (h < 0 || h >= (int)(s)->height)                              \
                                    continue;                                                    \
                                for (uint32_t t = 0; t < (s)->kernel_w; t++) {                   \
                                    int w_ = (int)(q * (s)->stride_x + t) - (int)(s)->pad_x;     \
                                    if (w_ < 0 || w_ >= (int)(s)->width)                         \
                                        continue;                                                \
                                    uint32_t ii = ((n * (s)->in_channels + c) * (s)->height +    \
                                                   (uint32_t)h) * (s)->width + (uint32_t)w_;     \
                                    uint32_t wi = ((k * (s)->in_channels + c) * (s)->kernel_h +  \
                                                   r) * (s)->kernel_w + t;                       \
                                    BODY;                                                        \
                                }                                                                \
                            }                                                                    \
                    }                                                                            \
    } while (0)

static double *acc_buf;     /* double accumulators for the references */

static void conv_shape_str(char *shape, size_t size, const struct conv_case *cc)
{
    const struct vgpu_conv_shape *s = &cc->s;
    snprintf(shape, size, "%ux%ux%ux%u k%u %ux%u s%u,%u p%u,%u%s", s->batch, s->in_channels, s->height, s->width,
             s->out_channels, s->kernel_h, s->kernel_w, s->stride_y, s->stride_x, s->pad_y, s->pad_x,
             cc->bias ? " +b" : "");
}

static void t_conv_forward(const struct conv_case *cc)
{
    const struct vgpu_conv_shape *s = &cc->s;
    uint32_t ni, nw, no;
    conv_dims(s, &ni, &nw, &no);
    uint32_t P = vgpu_conv_out_h(s), Q = vgpu_conv_out_w(s);
    fill(B(0), ni, -1, 1);
    fill(B(1), nw, -1, 1);
    fill(B(2), s->out_channels, -1, 1);
    poison(B(3), no);
    for (uint32_t i = 0; i < no; i++)
        acc_buf[i] = cc->bias ? B(2)[(i / (P * Q)) % s->out_channels] : 0;
    CONV_FOR_EACH(s, acc_buf[oi] += (double)B(0)[ii] * B(1)[wi]);
    for (uint32_t i = 0; i < no; i++)
        ref0[i] = (float)acc_buf[i];
    struct vgpu_ref bias = R(2, s->out_channels);
    vgpu_stream_reset(&stream);
    vgpu_conv2d_forward(&stream, s, R(0, ni), R(1, nw), cc->bias ? &bias : NULL, R(3, no));
    char shape[80];
    conv_shape_str(shape, sizeof shape, cc);
    run_check("conv2d_forward", shape, 1e-4, B(3), ref0, no, NULL, NULL, 0);
}

static void t_conv_backward_data(const struct conv_case *cc)
{
    const struct vgpu_conv_shape *s = &cc->s;
    uint32_t ni, nw, no;
    conv_dims(s, &ni, &nw, &no);
    fill(B(0), no, -1, 1);
    fill(B(1), nw, -1, 1);
    poison(B(2), ni);
    for (uint32_t i = 0; i < ni; i++)
        acc_buf[i] = 0;
    CONV_FOR_EACH(s, acc_buf[ii] += (double)B(0)[oi] * B(1)[wi]);
    for (uint32_t i = 0; i < ni; i++)
        ref0[i] = (float)acc_buf[i];
    vgpu_stream_reset(&stream);
    vgpu_conv2d_backward_data(&stream, s, R(0, no), R(1, nw), R(2, ni));
    char shape[80];
    conv_shape_str(shape, sizeof shape, &(struct conv_case){ cc->s, false });
    run_check("conv2d_backward_data", shape, 1e-4, B(2), ref0, ni, NULL, NULL, 0);
}

static void t_conv_backward_filter(const struct conv_case *cc)
{
    const struct vgpu_conv_shape *s = &cc->s;
    uint32_t ni, nw, no;
    conv_dims(s, &ni, &nw, &no);
    uint32_t P = vgpu_conv_out_h(s), Q = vgpu_conv_out_w(s), K = s->out_channels;
    fill(B(0), ni, -1, 1);
    fill(B(1), no, -1, 1);
    poison(B(2), nw);
    poison(B(3), K);
    for (uint32_t i = 0; i < nw; i++)
        acc_buf[i] = 0;
    CONV_FOR_EACH(s, acc_buf[wi] += (double)B(1)[oi] * B(0)[ii]);
    for (uint32_t i = 0; i < nw; i++)
        ref0[i] = (float)acc_buf[i];
    for (uint32_t k = 0; k < K; k++) {
        double sum = 0;
        for (uint32_t n = 0; n < s->batch; n++)
            for (uint32_t i = 0; i < P * Q; i++)
                sum += B(1)[(n * K + k) * P * Q + i];
        ref1[k] = (float)sum;
    }
    struct vgpu_ref db = R(3, K);
    vgpu_stream_reset(&stream);
    vgpu_conv2d_backward_filter(&stream, s, R(0, ni), R(1, no), R(2, nw), cc->bias ? &db : NULL);
    char shape[80];
    conv_shape_str(shape, sizeof shape, cc);
    run_check("conv2d_backward_filter", shape, 1e-4, B(2), ref0, nw, cc->bias ? B(3) : NULL, ref1, K);
}

/* ---- preprocessing ---- */

static void t_normalize(uint32_t batch, uint32_t h, uint32_t w, uint32_t ch)
{
    static const float mean[4] = { 0.485f, 0.456f, 0.406f, 0.5f }, stdv[4] = { 0.229f, 0.224f, 0.225f, 0.25f };
    const float scale = 1.0f / 255.0f;
    uint32_t n = batch * h * w * ch;
    uint8_t *in = (uint8_t *)B(0);
    for (uint32_t i = 0; i < n; i++)
        in[i] = (uint8_t)next_u64();
    poison(B(1), n);
    for (uint32_t b = 0; b < batch; b++)
        for (uint32_t c = 0; c < ch; c++)
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++) {
                    float v = (float)in[((b * h + y) * w + x) * ch + c];
                    ref0[((b * ch + c) * h + y) * w + x] = (v * scale - mean[c]) / stdv[c];
                }
    vgpu_stream_reset(&stream);
    vgpu_normalize_u8(&stream, batch, h, w, ch, scale, mean, stdv, vgpu_bytes(&buf[0], 0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u", batch, h, w, ch);
    run_check("normalize_u8", shape, 1e-5, B(1), ref0, n, NULL, NULL, 0);
}

static void t_crop(uint32_t batch, uint32_t ch, uint32_t h, uint32_t w, uint32_t top, uint32_t left, uint32_t oh,
                   uint32_t ow)
{
    uint32_t ni = batch * ch * h * w, no = batch * ch * oh * ow;
    fill(B(0), ni, -1, 1);
    poison(B(1), no);
    for (uint32_t pl = 0; pl < batch * ch; pl++)
        for (uint32_t y = 0; y < oh; y++)
            for (uint32_t x = 0; x < ow; x++)
                ref0[(pl * oh + y) * ow + x] = B(0)[(pl * h + top + y) * w + left + x];
    vgpu_stream_reset(&stream);
    vgpu_crop(&stream, batch, ch, h, w, top, left, oh, ow, R(0, ni), R(1, no));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u @%u,%u %ux%u", batch, ch, h, w, top, left, oh, ow);
    run_check("crop", shape, 0, B(1), ref0, no, NULL, NULL, 0);
}

static void t_flip(uint32_t batch, uint32_t ch, uint32_t h, uint32_t w)
{
    uint32_t n = batch * ch * h * w;
    fill(B(0), n, -1, 1);
    poison(B(1), n);
    for (uint32_t row = 0; row < batch * ch * h; row++)
        for (uint32_t x = 0; x < w; x++)
            ref0[row * w + x] = B(0)[row * w + (w - 1 - x)];
    vgpu_stream_reset(&stream);
    vgpu_flip_horizontal(&stream, batch, ch, h, w, R(0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u", batch, ch, h, w);
    run_check("flip_horizontal", shape, 0, B(1), ref0, n, NULL, NULL, 0);
}

static void t_resize(uint32_t batch, uint32_t ch, uint32_t h, uint32_t w, uint32_t oh, uint32_t ow)
{
    uint32_t ni = batch * ch * h * w, no = batch * ch * oh * ow;
    const float *in = B(0);
    fill(B(0), ni, -1, 1);
    poison(B(1), no);
    float sy_scale = (float)h / (float)oh, sx_scale = (float)w / (float)ow;
    for (uint32_t pl = 0; pl < batch * ch; pl++) {
        const float *base = in + pl * h * w;
        for (uint32_t y = 0; y < oh; y++) {
            float sy = ((float)y + 0.5f) * sy_scale - 0.5f;
            if (sy < 0)
                sy = 0;
            uint32_t y0 = (uint32_t)sy;
            if (y0 > h - 1)
                y0 = h - 1;
            uint32_t y1 = y0 + 1 < h ? y0 + 1 : h - 1;
            float ly = sy - (float)y0;
            for (uint32_t x = 0; x < ow; x++) {
                float sx = ((float)x + 0.5f) * sx_scale - 0.5f;
                if (sx < 0)
                    sx = 0;
                uint32_t x0 = (uint32_t)sx;
                if (x0 > w - 1)
                    x0 = w - 1;
                uint32_t x1 = x0 + 1 < w ? x0 + 1 : w - 1;
                float lx = sx - (float)x0;
                float v00 = base[y0 * w + x0], v01 = base[y0 * w + x1];
                float v10 = base[y1 * w + x0], v11 = base[y1 * w + x1];
                float top = v00 + (v01 - v00) * lx, bottom = v10 + (v11 - v10) * lx;
                ref0[(pl * oh + y) * ow + x] = top + (bottom - top) * ly;
            }
        }
    }
    vgpu_stream_reset(&stream);
    vgpu_resize_bilinear(&stream, batch, ch, h, w, oh, ow, R(0, ni), R(1, no));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u -> %ux%u", batch, ch, h, w, oh, ow);
    run_check("resize_bilinear", shape, 1e-5, B(1), ref0, no, NULL, NULL, 0);
}

static void t_copy(uint32_t n)
{
    fill(B(0), n, -1, 1);
    poison(B(1), n);
    memcpy(ref0, B(0), n * 4);
    vgpu_stream_reset(&stream);
    vgpu_copy(&stream, R(0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u words", n);
    run_check("copy", shape, 0, B(1), ref0, n, NULL, NULL, 0);
}

static void kernels(void)
{
    const struct virtio_gpu_compute_capset *cap = vgpu_capset(&gpu);
    for (unsigned op = 1; op < VGPU_OP_COUNT; op++) {
        if (vgpu_supports(&gpu, op))
            continue;
        printf("vgpu: opcode %u not offered by the capset (mask 0x%x): skipped\n", op, cap->opcode_mask);
    }
    if (vgpu_supports(&gpu, VGPU_OP_SGEMM)) {
        t_sgemm(1, 1, 1, 0, 1, 0);
        t_sgemm(7, 33, 1, VGPU_TRANSPOSE_A, 1.5f, 0);
        t_sgemm(33, 7, 7, VGPU_TRANSPOSE_B, 1, 0.5f);
        t_sgemm(33, 33, 33, VGPU_TRANSPOSE_A | VGPU_TRANSPOSE_B, -0.5f, 2);
        t_sgemm(64, 48, 96, 0, 1, 1);
    }
    if (vgpu_supports(&gpu, VGPU_OP_BIAS_ADD)) {
        t_bias_add(1, 1, 1);
        t_bias_add(7, 33, 1);
        t_bias_add(3, 7, 33);
    }
    if (vgpu_supports(&gpu, VGPU_OP_ACTIVATION)) {
        static const uint32_t counts[] = { 1, 7, 33, 1000 };
        for (unsigned i = 0; i < 4; i++)
            t_activation(VGPU_RELU, counts[i], false);
        t_activation(VGPU_RELU, 33, true);
        for (unsigned i = 0; i < 4; i++)
            t_activation(VGPU_GELU, counts[i], false);
        t_activation(VGPU_GELU, 33, true);
    }
    if (vgpu_supports(&gpu, VGPU_OP_ACTIVATION_BACKWARD)) {
        static const uint32_t counts[] = { 1, 33, 1000 };
        for (unsigned i = 0; i < 3; i++)
            t_activation_backward(VGPU_RELU, counts[i]);
        for (unsigned i = 0; i < 3; i++)
            t_activation_backward(VGPU_GELU, counts[i]);
    }
    if (vgpu_supports(&gpu, VGPU_OP_SOFTMAX)) {
        t_softmax(1, 1);
        t_softmax(7, 33);
        t_softmax(33, 7);
        t_softmax(4, 1000);
    }
    if (vgpu_supports(&gpu, VGPU_OP_SOFTMAX_XENT)) {
        t_softmax_xent(1, 1);
        t_softmax_xent(7, 33);
        t_softmax_xent(33, 7);
        t_softmax_xent(16, 1000);
    }
    if (vgpu_supports(&gpu, VGPU_OP_REDUCE)) {
        static const uint32_t shapes[][2] = { { 1, 1 }, { 7, 33 }, { 33, 7 }, { 100, 300 } };
        for (unsigned op = 0; op < 2; op++)
            for (unsigned axis = 0; axis < 2; axis++)
                for (unsigned i = 0; i < 4; i++)
                    t_reduce((enum vgpu_reduce_op)op, (enum vgpu_axis)axis, shapes[i][0], shapes[i][1]);
    }
    if (vgpu_supports(&gpu, VGPU_OP_AXPY)) {
        t_axpy_scale(true, 1);
        t_axpy_scale(true, 33);
        t_axpy_scale(true, 1000);
    }
    if (vgpu_supports(&gpu, VGPU_OP_SCALE)) {
        t_axpy_scale(false, 1);
        t_axpy_scale(false, 7);
        t_axpy_scale(false, 1000);
    }
    static const struct conv_case convs[] = {
        { { 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0 }, true },
        { { 2, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1 }, true },
        { { 1, 2, 9, 8, 3, 3, 2, 2, 2, 0, 1 }, false },
        { { 2, 3, 33, 7, 5, 5, 3, 2, 1, 2, 1 }, true },
    };
    for (unsigned i = 0; i < sizeof convs / sizeof convs[0]; i++) {
        if (vgpu_supports(&gpu, VGPU_OP_CONV2D_FORWARD))
            t_conv_forward(&convs[i]);
        if (vgpu_supports(&gpu, VGPU_OP_CONV2D_BACKWARD_DATA))
            t_conv_backward_data(&convs[i]);
        if (vgpu_supports(&gpu, VGPU_OP_CONV2D_BACKWARD_FILTER))
            t_conv_backward_filter(&convs[i]);
    }
    if (vgpu_supports(&gpu, VGPU_OP_NORMALIZE_U8)) {
        t_normalize(1, 1, 1, 1);
        t_normalize(2, 7, 33, 3);
        t_normalize(1, 5, 7, 4);
    }
    if (vgpu_supports(&gpu, VGPU_OP_CROP)) {
        t_crop(1, 1, 1, 1, 0, 0, 1, 1);
        t_crop(2, 3, 33, 7, 5, 2, 20, 4);
    }
    if (vgpu_supports(&gpu, VGPU_OP_FLIP_HORIZONTAL)) {
        t_flip(1, 1, 1, 1);
        t_flip(2, 3, 7, 33);
    }
    if (vgpu_supports(&gpu, VGPU_OP_RESIZE_BILINEAR)) {
        t_resize(1, 1, 1, 1, 7, 7);
        t_resize(2, 3, 7, 33, 16, 9);
        t_resize(1, 2, 33, 33, 7, 1);
    }
    if (vgpu_supports(&gpu, VGPU_OP_COPY)) {
        t_copy(1);
        t_copy(33);
        t_copy(1000);
    }
}

/* ---- beyond single kernels ---- */

static void status_line(const char *what, const char *shape, uint32_t got, uint32_t want)
{
    char detail[96];
    snprintf(detail, sizeof detail, "%s", vgpu_status_name(got));
    if (got != want)
        snprintf(detail, sizeof detail, "got %s, want %s", vgpu_status_name(got), vgpu_status_name(want));
    result(got == want, what, shape, detail);
}

/* HOST3D blobs: GPU memory only, filled and read back by TRANSFER_*_HOST_3D. */
static void host3d(void)
{
    struct vgpu_buf a, b, c;
    const uint32_t m = 33, n = 7, k = 7;
    uint32_t st = vgpu_buf_create(&ctx_a, &a, m * k * 4, VGPU_MEM_HOST);
    if (!st)
        st = vgpu_buf_create(&ctx_a, &b, k * n * 4, VGPU_MEM_HOST);
    if (!st)
        st = vgpu_buf_create(&ctx_a, &c, m * n * 4, VGPU_MEM_HOST);
    if (st) {
        status_line("host3d create", "3 blobs", st, 0);
        return;
    }
    fill(vgpu_f32p(&a), m * k, -1, 1);
    fill(vgpu_f32p(&b), k * n, -1, 1);
    st = vgpu_buf_upload(&a, 0, a.size);
    if (!st)
        st = vgpu_buf_upload(&b, 0, b.size);
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            double acc = 0;
            for (uint32_t q = 0; q < k; q++)
                acc += (double)vgpu_f32p(&a)[i * k + q] * vgpu_f32p(&b)[q * n + j];
            ref0[i * n + j] = (float)acc;
        }
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, m, n, k, 0, 1, 0, vgpu_f32(&a, 0, m * k), vgpu_f32(&b, 0, k * n), vgpu_f32(&c, 0, m * n));
    if (!st)
        st = vgpu_run(&ctx_a, &stream);
    poison(vgpu_f32p(&c), m * n);
    /* Download in two pieces (bytes [0, 100) and the rest) to exercise offsets. */
    if (!st)
        st = vgpu_buf_download(&c, 0, 100);
    if (!st)
        st = vgpu_buf_download(&c, 100, c.size - 100);
    if (st) {
        status_line("host3d sgemm", "33x7x7", st, 0);
        return;
    }
    double err = max_err(vgpu_f32p(&c), ref0, m * n);
    char detail[64];
    snprintf(detail, sizeof detail, "max err %.1e, tol 1e-04", err);
    result(err <= 1e-4, "host3d sgemm", "33x7x7 upload/download", detail);
    status_line("host3d transfer past end", "c +4 bytes", vgpu_buf_download(&c, 0, c.size + 4),
                VIRTIO_GPU_STATUS_TOO_BIG);
    st = virtio_gpu_transfer(&gpu.dev, ctx_a.id, c.id, false, 0, (uint32_t)c.size + 4, 0);
    status_line("host3d transfer past end", "device check", st, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    st = vgpu_buf_destroy(&a);
    if (!st)
        st = vgpu_buf_destroy(&b);
    if (!st)
        st = vgpu_buf_destroy(&c);
    status_line("host3d unref", "3 blobs", st, 0);
}

/* One SUBMIT_3D with max_commands commands: alternating scale and axpy over 512 vectors of 33. */
static void big_batch(void)
{
    uint32_t cmds = vgpu_capset(&gpu)->max_commands;
    if (cmds > 4096)
        cmds = 4096;
    cmds &= ~1u;
    const uint32_t vec = 33, nvec = 512;
    float *v = B(0), *acc = B(1);
    fill(v, vec * nvec, -1, 1);
    fill(acc, vec, -1, 1);
    memcpy(ref0, v, vec * nvec * 4);
    memcpy(ref1, acc, vec * 4);
    vgpu_stream_reset(&stream);
    for (uint32_t j = 0; j < cmds / 2; j++) {
        uint32_t i = j % nvec;
        float a = 1.0f + (float)((int)(j % 7) - 3) / 64.0f, b = 1.0f / (float)(1 + j % 5);
        vgpu_scale(&stream, vec, a, vgpu_f32(&buf[0], i * vec, vec));
        vgpu_axpy(&stream, vec, b, vgpu_f32(&buf[0], i * vec, vec), R(1, vec));
        for (uint32_t e = 0; e < vec; e++) {
            ref0[i * vec + e] = a * ref0[i * vec + e];
            ref1[e] = b * ref0[i * vec + e] + ref1[e];
        }
    }
    char shape[64], detail[96];
    snprintf(shape, sizeof shape, "%u commands, %u bytes", stream.count, stream.len);
    uint32_t st = stream.full ? VIRTIO_GPU_STATUS_TOO_BIG : vgpu_run(&ctx_a, &stream);
    if (st) {
        snprintf(detail, sizeof detail, "submit: %s", vgpu_status_name(st));
        result(false, "batch", shape, detail);
        return;
    }
    double e0 = max_err(v, ref0, vec * nvec), e1 = max_err(acc, ref1, vec);
    double err = e0 > e1 ? e0 : e1;
    snprintf(detail, sizeof detail, "max err %.1e, tol 1e-04", err);
    result(err <= 1e-4, "batch", shape, detail);
}

/*
 * Contexts A and B, each with its own fence ring, submit 8 rounds each without
 * waiting; each round depends on the previous one of its context. All 16
 * batches are in flight together; waited for in reverse order.
 */
static void two_contexts(struct vgpu_buf *bx, struct vgpu_buf *by)
{
    const uint32_t n = 33, rounds = 8;
    static struct vgpu_stream s[16];
    static bool ready;
    if (!ready) {
        for (unsigned i = 0; i < 16; i++)
            if (!vgpu_stream_init(&s[i], 1024)) {
                result(false, "two contexts", "", "out of DMA memory");
                return;
            }
        ready = true;
    }
    float *xa = B(4), *ya = B(5), *xb = vgpu_f32p(bx), *yb = vgpu_f32p(by);
    fill(xa, n, -1, 1);
    fill(ya, n, -1, 1);
    fill(xb, n, -1, 1);
    fill(yb, n, -1, 1);
    float rxa[33], rya[33], rxb[33], ryb[33];
    memcpy(rxa, xa, sizeof rxa);
    memcpy(rya, ya, sizeof rya);
    memcpy(rxb, xb, sizeof rxb);
    memcpy(ryb, yb, sizeof ryb);
    struct vgpu_fence f[16];
    uint32_t st = 0;
    for (uint32_t r = 0; r < rounds && !st; r++) {
        struct vgpu_stream *sa = &s[2 * r], *sb = &s[2 * r + 1];
        vgpu_stream_reset(sa);
        vgpu_scale(sa, n, 1.25f, R(4, n));
        vgpu_axpy(sa, n, 0.5f, R(4, n), R(5, n));
        vgpu_stream_reset(sb);
        vgpu_relu(sb, n, vgpu_f32(bx, 0, n), vgpu_f32(bx, 0, n));
        vgpu_axpy(sb, n, -1.0f, vgpu_f32(bx, 0, n), vgpu_f32(by, 0, n));
        vgpu_scale(sb, n, -0.75f, vgpu_f32(bx, 0, n));
        for (uint32_t i = 0; i < n; i++) {
            rxa[i] *= 1.25f;
            rya[i] = 0.5f * rxa[i] + rya[i];
            rxb[i] = rxb[i] > 0 ? rxb[i] : 0;
            ryb[i] = -1.0f * rxb[i] + ryb[i];
            rxb[i] *= -0.75f;
        }
        st = vgpu_submit(&ctx_a, sa, &f[2 * r]);
        if (!st)
            st = vgpu_submit(&ctx_b, sb, &f[2 * r + 1]);
    }
    unsigned inflight = gpu.dev.inflight;
    for (int i = 2 * (int)rounds - 1; i >= 0 && !st; i--)
        st = vgpu_wait(&f[i]);
    char detail[96];
    if (st) {
        snprintf(detail, sizeof detail, "%s", vgpu_status_name(st));
        result(false, "two contexts", "8+8 batches in flight", detail);
        return;
    }
    double err = 0, e;
    if ((e = max_err(xa, rxa, n)) > err) err = e;
    if ((e = max_err(ya, rya, n)) > err) err = e;
    if ((e = max_err(xb, rxb, n)) > err) err = e;
    if ((e = max_err(yb, ryb, n)) > err) err = e;
    snprintf(detail, sizeof detail, "max err %.1e, tol 1e-05, %u in flight, fences A %llu B %llu", err,
             inflight, (unsigned long long)ctx_a.last_signalled, (unsigned long long)ctx_b.last_signalled);
    result(err <= 1e-5, "two contexts", "8+8 batches interleaved", detail);
}

/*
 * Refusals: B names A's resource (attached to B, but not B's), a resource
 * that does not exist, an unknown opcode, a wrong operand length; each must
 * be refused while A's batches, submitted around them, compute correctly;
 * then B must still compute.
 */
static void refusals(struct vgpu_buf *bx, struct vgpu_buf *by)
{
    static struct vgpu_stream sa1, sa2, sb[4];
    static bool ready;
    if (!ready) {
        bool ok = vgpu_stream_init(&sa1, 1024) && vgpu_stream_init(&sa2, 1024);
        for (unsigned i = 0; i < 4; i++)
            ok = ok && vgpu_stream_init(&sb[i], 1024);
        if (!ok) {
            result(false, "refusals", "", "out of DMA memory");
            return;
        }
        ready = true;
    }
    uint32_t st = virtio_gpu_ctx_attach(&gpu.dev, ctx_b.id, buf[0].id, false);
    status_line("attach foreign resource", "A's blob to B (allowed)", st, 0);

    const uint32_t m = 7, n = 33, k = 7;
    fill(B(0), m * k, -1, 1);
    fill(B(1), k * n, -1, 1);
    poison(B(2), m * n);
    poison(B(3), m * n);
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            double acc = 0;
            for (uint32_t q = 0; q < k; q++)
                acc += (double)B(0)[i * k + q] * B(1)[q * n + j];
            ref0[i * n + j] = (float)acc;
            ref1[i * n + j] = (float)acc > 0 ? (float)acc : 0;
        }
    vgpu_stream_reset(&sa1);
    vgpu_sgemm(&sa1, m, n, k, 0, 1, 0, R(0, m * k), R(1, k * n), R(2, m * n));
    vgpu_stream_reset(&sa2);
    vgpu_relu(&sa2, m * n, R(2, m * n), R(3, m * n));

    /* B's bad batches. */
    for (unsigned i = 0; i < 4; i++)
        vgpu_stream_reset(&sb[i]);
    vgpu_scale(&sb[0], 4, 2.0f, R(0, 4));                               /* A's blob */
    vgpu_scale(&sb[1], 4, 2.0f, (struct vgpu_ref){ 999999, 16, 0 });    /* no such blob */
    uint32_t junk[6] = { 0 };
    vgpu_scale(&sb[2], 4, 2.0f, vgpu_f32(bx, 0, 4));
    vgpu_raw(&sb[2], 99, junk, sizeof junk);                            /* unknown opcode */
    vgpu_scale(&sb[3], 4, 2.0f, vgpu_f32(bx, 0, 5));                    /* 5 elements for count 4 */
    static const uint32_t want[4] = { VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
                                      VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER };
    static const char *const what[4] = { "A's resource from B", "unknown resource 999999",
                                         "unknown opcode 99", "operand length mismatch" };

    /* A, B x4, A in flight together. */
    float bx0 = vgpu_f32p(bx)[0];
    struct vgpu_fence fa1, fa2, fb[4];
    st = vgpu_submit(&ctx_a, &sa1, &fa1);
    for (unsigned i = 0; i < 4 && !st; i++)
        st = vgpu_submit(&ctx_b, &sb[i], &fb[i]);
    if (!st)
        st = vgpu_submit(&ctx_a, &sa2, &fa2);
    if (st) {
        status_line("refusals submit", "", st, 0);
        return;
    }
    for (unsigned i = 0; i < 4; i++)
        status_line("refuse", what[i], vgpu_wait(&fb[i]), want[i]);
    uint32_t sta = vgpu_wait(&fa1);
    if (!sta)
        sta = vgpu_wait(&fa2);
    else
        vgpu_wait(&fa2);
    char detail[96];
    double err = sta ? 1e30 : max_err(B(2), ref0, m * n);
    double e1 = sta ? 1e30 : max_err(B(3), ref1, m * n);
    if (e1 > err)
        err = e1;
    snprintf(detail, sizeof detail, "%s, max err %.1e, tol 1e-04", vgpu_status_name(sta), err);
    result(!sta && err <= 1e-4, "A beside refusals", "sgemm 7x33x7 + relu", detail);
    /* Nothing of the refused batches ran: bx[0] untouched by sb[2]'s valid first command. */
    snprintf(detail, sizeof detail, "bx[0] %s", vgpu_f32p(bx)[0] == bx0 ? "unchanged" : "CHANGED");
    result(vgpu_f32p(bx)[0] == bx0, "refused batch ran nothing", "scale before opcode 99", detail);
    status_line("transfer of A's resource", "by B", virtio_gpu_transfer(&gpu.dev, ctx_b.id, buf[0].id, true, 0, 4, 0),
                VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);

    /* B still computes. */
    fill(vgpu_f32p(by), 7, -1, 1);
    for (unsigned i = 0; i < 7; i++)
        ref0[i] = vgpu_f32p(by)[i] * 3.0f;
    vgpu_stream_reset(&sb[0]);
    vgpu_scale(&sb[0], 7, 3.0f, vgpu_f32(by, 0, 7));
    st = vgpu_run(&ctx_b, &sb[0]);
    err = st ? 1e30 : max_err(vgpu_f32p(by), ref0, 7);
    snprintf(detail, sizeof detail, "%s, max err %.1e, tol 0", vgpu_status_name(st), err);
    result(!st && err == 0, "B after refusals", "scale 7", detail);
}

static void teardown(struct vgpu_buf *bx, struct vgpu_buf *by)
{
    uint32_t st = 0;
    for (unsigned i = 0; i < NBUF && !st; i++)
        st = vgpu_buf_destroy(&buf[i]);
    if (!st)
        st = vgpu_buf_destroy(bx);
    if (!st)
        st = vgpu_buf_destroy(by);
    status_line("unref", "all blobs", st, 0);
    status_line("unref again", "already gone", vgpu_buf_destroy(by), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    st = vgpu_ctx_destroy(&ctx_b);
    if (!st)
        st = vgpu_ctx_destroy(&ctx_a);
    status_line("ctx_destroy", "A and B", st, 0);
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 1, 1.0f, (struct vgpu_ref){ 1, 4, 0 });
    status_line("submit to destroyed ctx", "A", vgpu_run(&ctx_a, &stream), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
}

int test_vgpu(void)
{
    const char *why = vgpu_open(&gpu, 0);
    if (why) {
        printf("vgpu: open: %s%s%s\n", why, virtio_gpu_error(&gpu.dev) ? ": " : "",
               virtio_gpu_error(&gpu.dev) ? virtio_gpu_error(&gpu.dev) : "");
        printf("vgpu: 0 passed, 1 failed\n");
        return 1;
    }
    const struct virtio_gpu_compute_capset *cap = vgpu_capset(&gpu);
    printf("vgpu: features");
    for (unsigned bit = 0; bit < 64; bit++)
        if (gpu.dev.vp.features & VIRTIO_BIT(bit)) {
            const char *name = virtio_gpu_feature_name(bit);
            if (name)
                printf(" %s", name);
            else
                printf(" bit%u", bit);
        }
    printf("\n");
    printf("vgpu: capset 0x%x v%u: stream v%u, opcodes 0x%x, max %u commands / %u bytes, %u contexts, "
           "%llu MiB, backend %s\n",
           VIRTIO_GPU_CAPSET_MALVVM_COMPUTE, cap->capset_version, cap->stream_version, cap->opcode_mask,
           cap->max_commands, cap->max_stream_bytes, cap->max_contexts,
           (unsigned long long)(cap->memory_bytes >> 20), cap->backend == 1 ? "vulkan" : "cpu");

    rng_state = 0x5eed;
    uint32_t st = vgpu_ctx_create(&gpu, &ctx_a, "vgpu-test-a", 0);
    if (!st)
        st = vgpu_ctx_create(&gpu, &ctx_b, "vgpu-test-b", 5);
    for (unsigned i = 0; i < NBUF && !st; i++)
        st = vgpu_buf_create(&ctx_a, &buf[i], BUF_BYTES, VGPU_MEM_GUEST);
    static struct vgpu_buf bx, by;
    if (!st)
        st = vgpu_buf_create(&ctx_b, &bx, 4096, VGPU_MEM_GUEST);
    if (!st)
        st = vgpu_buf_create(&ctx_b, &by, 4096, VGPU_MEM_GUEST);
    ref0 = dma_alloc(BUF_BYTES, 64);
    ref1 = dma_alloc(BUF_BYTES, 64);
    acc_buf = dma_alloc(BUF_FLOATS * sizeof(double), 64);
    if (st || !ref0 || !ref1 || !acc_buf || !vgpu_stream_init(&stream, 256 * 1024)) {
        printf("vgpu: setup: %s\n", st ? vgpu_status_name(st) : "out of DMA memory");
        printf("vgpu: 0 passed, 1 failed\n");
        return 1;
    }

    kernels();
    host3d();
    big_batch();
    two_contexts(&bx, &by);
    refusals(&bx, &by);
    teardown(&bx, &by);

    if (virtio_gpu_error(&gpu.dev)) {
        printf("vgpu: device: %s\n", virtio_gpu_error(&gpu.dev));
        failed++;
    }
    printf("vgpu: %u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
