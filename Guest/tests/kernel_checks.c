/*
 * The compute-kernel checks shared by test=vgpu and test=fullvgpu
 * (kernel_checks.h): one function per opcode of compute stream v1, each
 * recording the kernel on the target's buffers, running it and comparing
 * with the same computation on the guest CPU.
 */
#include "kernel_checks.h"

#include "malv/console.h"
#include "malv/cpuref.h"
#include "malv/format.h"
#include "malv/memory.h"
#include "malv/string.h"

struct kc_target kc;
float *kc_ref0, *kc_ref1;
unsigned kc_passed, kc_failed;
static uint64_t kc_rng;
static double *kc_acc;      /* double accumulators for the references */

bool kc_init(const struct kc_target *target, uint64_t seed)
{
    kc = *target;
    kc_rng = seed;
    kc_ref0 = dma_alloc(KC_BUF_BYTES, 64);
    kc_ref1 = dma_alloc(KC_BUF_BYTES, 64);
    kc_acc = dma_alloc(KC_BUF_FLOATS * sizeof(double), 64);
    return kc_ref0 && kc_ref1 && kc_acc;
}

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

uint64_t kc_next_u64(void)
{
    uint64_t z = (kc_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static float rnd(float lo, float hi)
{
    return lo + (hi - lo) * (float)(kc_next_u64() >> 40) * (1.0f / 16777216.0f);
}

void kc_fill(float *p, unsigned n, float lo, float hi)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = rnd(lo, hi);
}

void kc_poison(float *p, unsigned n)
{
    union { float f; uint32_t u; } nan = { .u = 0x7fc00bad };
    for (unsigned i = 0; i < n; i++)
        p[i] = nan.f;
}

/* ---- reporting ---- */

void kc_result(bool ok, const char *kernel, const char *shape, const char *detail)
{
    printf("%s: %-24s %-34s ... %s (%s)\n", kc.program, kernel, shape, ok ? "ok" : "FAILED", detail);
    if (ok)
        kc_passed++;
    else
        kc_failed++;
}

double kc_max_err(const float *got, const float *want, unsigned n)
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

/* Runs the recorded stream, then compares up to two outputs. */
static void run_check(const char *kernel, const char *shape, double tol, const float *got0, const float *want0,
                      unsigned n0, const float *got1, const float *want1, unsigned n1)
{
    char detail[96];
    uint32_t st = kc.run(kc.stream);
    if (st) {
        snprintf(detail, sizeof detail, "submit: %s", kc.status_name(st));
        kc_result(false, kernel, shape, detail);
        return;
    }
    double err = kc_max_err(got0, want0, n0);
    if (got1) {
        double e1 = kc_max_err(got1, want1, n1);
        if (e1 > err)
            err = e1;
    }
    snprintf(detail, sizeof detail, "max err %.1e, tol %.0e", err, tol);
    kc_result(err <= tol, kernel, shape, detail);
}

/* ---- the kernels, one function per opcode ---- */

static void t_sgemm(uint32_t m, uint32_t n, uint32_t k, uint32_t tr, float alpha, float beta)
{
    float *a = B(0), *b = B(1), *c = B(2);
    kc_fill(a, m * k, -1, 1);
    kc_fill(b, k * n, -1, 1);
    if (beta != 0)
        kc_fill(c, m * n, -1, 1);
    else
        kc_poison(c, m * n);
    cpuref_sgemm(m, n, k, tr, alpha, beta, a, b, c, kc_ref0);
    vgpu_stream_reset(kc.stream);
    vgpu_sgemm(kc.stream, m, n, k, tr, alpha, beta, R(0, m * k), R(1, k * n), R(2, m * n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%u%s%s a=%.2f b=%.2f", m, n, k, tr & 1 ? " tA" : "", tr & 2 ? " tB" : "",
             (double)alpha, (double)beta);
    run_check("sgemm", shape, 1e-4, c, kc_ref0, m * n, NULL, NULL, 0);
}

static void t_bias_add(uint32_t outer, uint32_t ch, uint32_t inner)
{
    uint32_t n = outer * ch * inner;
    kc_fill(B(0), n, -1, 1);
    kc_fill(B(1), ch, -1, 1);
    for (uint32_t i = 0; i < n; i++)
        kc_ref0[i] = B(0)[i] + B(1)[(i / inner) % ch];
    vgpu_stream_reset(kc.stream);
    vgpu_bias_add(kc.stream, outer, ch, inner, R(0, n), R(1, ch));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%u", outer, ch, inner);
    run_check("bias_add", shape, 1e-6, B(0), kc_ref0, n, NULL, NULL, 0);
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
    kc_fill(B(0), n, -5, 5);
    for (uint32_t i = 0; i < n; i++)
        kc_ref0[i] = act == VGPU_RELU ? (B(0)[i] > 0 ? B(0)[i] : 0) : gelu_ref(B(0)[i]);
    unsigned out = in_place ? 0 : 1;
    if (!in_place)
        kc_poison(B(1), n);
    vgpu_stream_reset(kc.stream);
    vgpu_activation(kc.stream, act, n, R(0, n), R(out, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u%s", n, in_place ? " in-place" : "");
    run_check(act == VGPU_RELU ? "relu" : "gelu", shape, act == VGPU_RELU ? 0 : 1e-5, B(out), kc_ref0, n, NULL,
              NULL, 0);
}

static void t_activation_backward(enum vgpu_activation act, uint32_t n)
{
    kc_fill(B(0), n, -5, 5);
    kc_fill(B(1), n, -1, 1);
    kc_poison(B(2), n);
    for (uint32_t i = 0; i < n; i++)
        kc_ref0[i] = act == VGPU_RELU ? (B(0)[i] > 0 ? B(1)[i] : 0) : gelu_grad_ref(B(0)[i], B(1)[i]);
    vgpu_stream_reset(kc.stream);
    vgpu_activation_backward(kc.stream, act, n, R(0, n), R(1, n), R(2, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u", n);
    run_check(act == VGPU_RELU ? "relu_backward" : "gelu_backward", shape, act == VGPU_RELU ? 0 : 1e-5, B(2),
              kc_ref0, n, NULL, NULL, 0);
}

/* The row's maximum and sum of exp(x - max): what softmax and its cross-entropy both need. */
static void exp_sum(const float *x, uint32_t cols, double *mx, double *total)
{
    *mx = x[0];
    *total = 0;
    for (uint32_t j = 1; j < cols; j++)
        *mx = x[j] > *mx ? x[j] : *mx;
    for (uint32_t j = 0; j < cols; j++)
        *total += m_exp(x[j] - *mx);
}

static void t_softmax(uint32_t rows, uint32_t cols)
{
    uint32_t n = rows * cols;
    kc_fill(B(0), n, -8, 8);
    kc_poison(B(1), n);
    for (uint32_t r = 0; r < rows; r++) {
        const float *x = B(0) + r * cols;
        double mx, total;
        exp_sum(x, cols, &mx, &total);
        for (uint32_t j = 0; j < cols; j++)
            kc_ref0[r * cols + j] = (float)(m_exp(x[j] - mx) / total);
    }
    vgpu_stream_reset(kc.stream);
    vgpu_softmax(kc.stream, rows, cols, R(0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%u", rows, cols);
    run_check("softmax", shape, 1e-5, B(1), kc_ref0, n, NULL, NULL, 0);
}

static void t_softmax_xent(uint32_t rows, uint32_t classes)
{
    uint32_t n = rows * classes;
    float scale = 1.0f / (float)rows;
    uint32_t *labels = (uint32_t *)B(1);
    kc_fill(B(0), n, -8, 8);
    for (uint32_t r = 0; r < rows; r++)
        labels[r] = (uint32_t)(kc_next_u64() % classes);
    kc_poison(B(2), rows);
    kc_poison(B(3), n);
    for (uint32_t r = 0; r < rows; r++) {
        const float *x = B(0) + r * classes;
        double mx, total;
        exp_sum(x, classes, &mx, &total);
        for (uint32_t j = 0; j < classes; j++)
            kc_ref1[r * classes + j] =
                (float)((m_exp(x[j] - mx) / total - (j == labels[r] ? 1.0 : 0.0)) * scale);
        kc_ref0[r] = (float)(mx + m_log(total) - x[labels[r]]);
    }
    vgpu_stream_reset(kc.stream);
    vgpu_softmax_xent(kc.stream, rows, classes, scale, R(0, n), R(1, rows), R(2, rows), R(3, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%u", rows, classes);
    run_check("softmax_xent", shape, 1e-5, B(2), kc_ref0, rows, B(3), kc_ref1, n);
}

static void t_reduce(enum vgpu_reduce_op op, enum vgpu_axis axis, uint32_t rows, uint32_t cols)
{
    kc_fill(B(0), rows * cols, -1, 1);
    uint32_t outer = axis == VGPU_PER_ROW ? rows : cols, inner = axis == VGPU_PER_ROW ? cols : rows;
    kc_poison(B(1), outer);
    for (uint32_t o = 0; o < outer; o++) {
        double sum = 0;
        float mx = -1e30f;
        for (uint32_t i = 0; i < inner; i++) {
            float v = axis == VGPU_PER_ROW ? B(0)[o * cols + i] : B(0)[i * cols + o];
            sum += v;
            mx = v > mx ? v : mx;
        }
        kc_ref0[o] = op == VGPU_SUM ? (float)sum : mx;
    }
    vgpu_stream_reset(kc.stream);
    vgpu_reduce(kc.stream, op, axis, rows, cols, R(0, rows * cols), R(1, outer));
    char name[32], shape[64];
    snprintf(name, sizeof name, "reduce_%s_%s", op == VGPU_SUM ? "sum" : "max", axis == VGPU_PER_ROW ? "rows" : "cols");
    snprintf(shape, sizeof shape, "%ux%u", rows, cols);
    run_check(name, shape, op == VGPU_SUM ? 1e-5 : 0, B(1), kc_ref0, outer, NULL, NULL, 0);
}

static void t_axpy_scale(bool axpy, uint32_t n)
{
    float alpha = axpy ? 0.75f : -1.25f;
    kc_fill(B(0), n, -1, 1);
    kc_fill(B(1), n, -1, 1);
    for (uint32_t i = 0; i < n; i++)
        kc_ref0[i] = axpy ? alpha * B(0)[i] + B(1)[i] : alpha * B(0)[i];
    vgpu_stream_reset(kc.stream);
    if (axpy)
        vgpu_axpy(kc.stream, n, alpha, R(0, n), R(1, n));
    else
        vgpu_scale(kc.stream, n, alpha, R(0, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u a=%.2f", n, (double)alpha);
    run_check(axpy ? "axpy" : "scale", shape, axpy ? 1e-6 : 0, axpy ? B(1) : B(0), kc_ref0, n, NULL, NULL, 0);
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
    kc_fill(B(0), ni, -1, 1);
    kc_fill(B(1), nw, -1, 1);
    kc_fill(B(2), s->out_channels, -1, 1);
    kc_poison(B(3), no);
    for (uint32_t i = 0; i < no; i++)
        kc_acc[i] = cc->bias ? B(2)[(i / (P * Q)) % s->out_channels] : 0;
    CONV_FOR_EACH(s, kc_acc[oi] += (double)B(0)[ii] * B(1)[wi]);
    for (uint32_t i = 0; i < no; i++)
        kc_ref0[i] = (float)kc_acc[i];
    struct vgpu_ref bias = R(2, s->out_channels);
    vgpu_stream_reset(kc.stream);
    vgpu_conv2d_forward(kc.stream, s, R(0, ni), R(1, nw), cc->bias ? &bias : NULL, R(3, no));
    char shape[80];
    conv_shape_str(shape, sizeof shape, cc);
    run_check("conv2d_forward", shape, 1e-4, B(3), kc_ref0, no, NULL, NULL, 0);
}

static void t_conv_backward_data(const struct conv_case *cc)
{
    const struct vgpu_conv_shape *s = &cc->s;
    uint32_t ni, nw, no;
    conv_dims(s, &ni, &nw, &no);
    kc_fill(B(0), no, -1, 1);
    kc_fill(B(1), nw, -1, 1);
    kc_poison(B(2), ni);
    for (uint32_t i = 0; i < ni; i++)
        kc_acc[i] = 0;
    CONV_FOR_EACH(s, kc_acc[ii] += (double)B(0)[oi] * B(1)[wi]);
    for (uint32_t i = 0; i < ni; i++)
        kc_ref0[i] = (float)kc_acc[i];
    vgpu_stream_reset(kc.stream);
    vgpu_conv2d_backward_data(kc.stream, s, R(0, no), R(1, nw), R(2, ni));
    char shape[80];
    conv_shape_str(shape, sizeof shape, &(struct conv_case){ cc->s, false });
    run_check("conv2d_backward_data", shape, 1e-4, B(2), kc_ref0, ni, NULL, NULL, 0);
}

static void t_conv_backward_filter(const struct conv_case *cc)
{
    const struct vgpu_conv_shape *s = &cc->s;
    uint32_t ni, nw, no;
    conv_dims(s, &ni, &nw, &no);
    uint32_t P = vgpu_conv_out_h(s), Q = vgpu_conv_out_w(s), K = s->out_channels;
    kc_fill(B(0), ni, -1, 1);
    kc_fill(B(1), no, -1, 1);
    kc_poison(B(2), nw);
    kc_poison(B(3), K);
    for (uint32_t i = 0; i < nw; i++)
        kc_acc[i] = 0;
    CONV_FOR_EACH(s, kc_acc[wi] += (double)B(1)[oi] * B(0)[ii]);
    for (uint32_t i = 0; i < nw; i++)
        kc_ref0[i] = (float)kc_acc[i];
    for (uint32_t k = 0; k < K; k++) {
        double sum = 0;
        for (uint32_t n = 0; n < s->batch; n++)
            for (uint32_t i = 0; i < P * Q; i++)
                sum += B(1)[(n * K + k) * P * Q + i];
        kc_ref1[k] = (float)sum;
    }
    struct vgpu_ref db = R(3, K);
    vgpu_stream_reset(kc.stream);
    vgpu_conv2d_backward_filter(kc.stream, s, R(0, ni), R(1, no), R(2, nw), cc->bias ? &db : NULL);
    char shape[80];
    conv_shape_str(shape, sizeof shape, cc);
    run_check("conv2d_backward_filter", shape, 1e-4, B(2), kc_ref0, nw, cc->bias ? B(3) : NULL, kc_ref1, K);
}

/* ---- preprocessing ---- */

static void t_normalize(uint32_t batch, uint32_t h, uint32_t w, uint32_t ch)
{
    static const float mean[4] = { 0.485f, 0.456f, 0.406f, 0.5f }, stdv[4] = { 0.229f, 0.224f, 0.225f, 0.25f };
    const float scale = 1.0f / 255.0f;
    uint32_t n = batch * h * w * ch;
    uint8_t *in = (uint8_t *)B(0);
    for (uint32_t i = 0; i < n; i++)
        in[i] = (uint8_t)kc_next_u64();
    kc_poison(B(1), n);
    for (uint32_t b = 0; b < batch; b++)
        for (uint32_t c = 0; c < ch; c++)
            for (uint32_t y = 0; y < h; y++)
                for (uint32_t x = 0; x < w; x++) {
                    float v = (float)in[((b * h + y) * w + x) * ch + c];
                    kc_ref0[((b * ch + c) * h + y) * w + x] = (v * scale - mean[c]) / stdv[c];
                }
    vgpu_stream_reset(kc.stream);
    vgpu_normalize_u8(kc.stream, batch, h, w, ch, scale, mean, stdv, vgpu_bytes(&kc.buf[0], 0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u", batch, h, w, ch);
    run_check("normalize_u8", shape, 1e-5, B(1), kc_ref0, n, NULL, NULL, 0);
}

static void t_crop(uint32_t batch, uint32_t ch, uint32_t h, uint32_t w, uint32_t top, uint32_t left, uint32_t oh,
                   uint32_t ow)
{
    uint32_t ni = batch * ch * h * w, no = batch * ch * oh * ow;
    kc_fill(B(0), ni, -1, 1);
    kc_poison(B(1), no);
    for (uint32_t pl = 0; pl < batch * ch; pl++)
        for (uint32_t y = 0; y < oh; y++)
            for (uint32_t x = 0; x < ow; x++)
                kc_ref0[(pl * oh + y) * ow + x] = B(0)[(pl * h + top + y) * w + left + x];
    vgpu_stream_reset(kc.stream);
    vgpu_crop(kc.stream, batch, ch, h, w, top, left, oh, ow, R(0, ni), R(1, no));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u @%u,%u %ux%u", batch, ch, h, w, top, left, oh, ow);
    run_check("crop", shape, 0, B(1), kc_ref0, no, NULL, NULL, 0);
}

static void t_flip(uint32_t batch, uint32_t ch, uint32_t h, uint32_t w)
{
    uint32_t n = batch * ch * h * w;
    kc_fill(B(0), n, -1, 1);
    kc_poison(B(1), n);
    for (uint32_t row = 0; row < batch * ch * h; row++)
        for (uint32_t x = 0; x < w; x++)
            kc_ref0[row * w + x] = B(0)[row * w + (w - 1 - x)];
    vgpu_stream_reset(kc.stream);
    vgpu_flip_horizontal(kc.stream, batch, ch, h, w, R(0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u", batch, ch, h, w);
    run_check("flip_horizontal", shape, 0, B(1), kc_ref0, n, NULL, NULL, 0);
}

static void t_resize(uint32_t batch, uint32_t ch, uint32_t h, uint32_t w, uint32_t oh, uint32_t ow)
{
    uint32_t ni = batch * ch * h * w, no = batch * ch * oh * ow;
    const float *in = B(0);
    kc_fill(B(0), ni, -1, 1);
    kc_poison(B(1), no);
    cpuref_resize_bilinear(batch * ch, h, w, oh, ow, in, kc_ref0);
    vgpu_stream_reset(kc.stream);
    vgpu_resize_bilinear(kc.stream, batch, ch, h, w, oh, ow, R(0, ni), R(1, no));
    char shape[64];
    snprintf(shape, sizeof shape, "%ux%ux%ux%u -> %ux%u", batch, ch, h, w, oh, ow);
    run_check("resize_bilinear", shape, 1e-5, B(1), kc_ref0, no, NULL, NULL, 0);
}

static void t_copy(uint32_t n)
{
    kc_fill(B(0), n, -1, 1);
    kc_poison(B(1), n);
    memcpy(kc_ref0, B(0), n * 4);
    vgpu_stream_reset(kc.stream);
    vgpu_copy(kc.stream, R(0, n), R(1, n));
    char shape[64];
    snprintf(shape, sizeof shape, "%u words", n);
    run_check("copy", shape, 0, B(1), kc_ref0, n, NULL, NULL, 0);
}

static bool offered(unsigned opcode)
{
    return opcode < 32 && (kc.opcode_mask >> opcode & 1);
}

void kc_kernels(void)
{
    for (unsigned op = 1; op < VGPU_OP_COUNT; op++) {
        if (offered(op))
            continue;
        printf("%s: opcode %u not offered (mask 0x%x): skipped\n", kc.program, op, kc.opcode_mask);
    }
    if (offered(VGPU_OP_SGEMM)) {
        t_sgemm(1, 1, 1, 0, 1, 0);
        t_sgemm(7, 33, 1, VGPU_TRANSPOSE_A, 1.5f, 0);
        t_sgemm(33, 7, 7, VGPU_TRANSPOSE_B, 1, 0.5f);
        t_sgemm(33, 33, 33, VGPU_TRANSPOSE_A | VGPU_TRANSPOSE_B, -0.5f, 2);
        t_sgemm(64, 48, 96, 0, 1, 1);
    }
    if (offered(VGPU_OP_BIAS_ADD)) {
        t_bias_add(1, 1, 1);
        t_bias_add(7, 33, 1);
        t_bias_add(3, 7, 33);
    }
    if (offered(VGPU_OP_ACTIVATION)) {
        static const uint32_t counts[] = { 1, 7, 33, 1000 };
        for (unsigned i = 0; i < 4; i++)
            t_activation(VGPU_RELU, counts[i], false);
        t_activation(VGPU_RELU, 33, true);
        for (unsigned i = 0; i < 4; i++)
            t_activation(VGPU_GELU, counts[i], false);
        t_activation(VGPU_GELU, 33, true);
    }
    if (offered(VGPU_OP_ACTIVATION_BACKWARD)) {
        static const uint32_t counts[] = { 1, 33, 1000 };
        for (unsigned i = 0; i < 3; i++)
            t_activation_backward(VGPU_RELU, counts[i]);
        for (unsigned i = 0; i < 3; i++)
            t_activation_backward(VGPU_GELU, counts[i]);
    }
    if (offered(VGPU_OP_SOFTMAX)) {
        t_softmax(1, 1);
        t_softmax(7, 33);
        t_softmax(33, 7);
        t_softmax(4, 1000);
    }
    if (offered(VGPU_OP_SOFTMAX_XENT)) {
        t_softmax_xent(1, 1);
        t_softmax_xent(7, 33);
        t_softmax_xent(33, 7);
        t_softmax_xent(16, 1000);
    }
    if (offered(VGPU_OP_REDUCE)) {
        static const uint32_t shapes[][2] = { { 1, 1 }, { 7, 33 }, { 33, 7 }, { 100, 300 } };
        for (unsigned op = 0; op < 2; op++)
            for (unsigned axis = 0; axis < 2; axis++)
                for (unsigned i = 0; i < 4; i++)
                    t_reduce((enum vgpu_reduce_op)op, (enum vgpu_axis)axis, shapes[i][0], shapes[i][1]);
    }
    if (offered(VGPU_OP_AXPY)) {
        t_axpy_scale(true, 1);
        t_axpy_scale(true, 33);
        t_axpy_scale(true, 1000);
    }
    if (offered(VGPU_OP_SCALE)) {
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
        if (offered(VGPU_OP_CONV2D_FORWARD))
            t_conv_forward(&convs[i]);
        if (offered(VGPU_OP_CONV2D_BACKWARD_DATA))
            t_conv_backward_data(&convs[i]);
        if (offered(VGPU_OP_CONV2D_BACKWARD_FILTER))
            t_conv_backward_filter(&convs[i]);
    }
    if (offered(VGPU_OP_NORMALIZE_U8)) {
        t_normalize(1, 1, 1, 1);
        t_normalize(2, 7, 33, 3);
        t_normalize(1, 5, 7, 4);
    }
    if (offered(VGPU_OP_CROP)) {
        t_crop(1, 1, 1, 1, 0, 0, 1, 1);
        t_crop(2, 3, 33, 7, 5, 2, 20, 4);
    }
    if (offered(VGPU_OP_FLIP_HORIZONTAL)) {
        t_flip(1, 1, 1, 1);
        t_flip(2, 3, 7, 33);
    }
    if (offered(VGPU_OP_RESIZE_BILINEAR)) {
        t_resize(1, 1, 1, 1, 7, 7);
        t_resize(2, 3, 7, 33, 16, 9);
        t_resize(1, 2, 33, 33, 7, 1);
    }
    if (offered(VGPU_OP_COPY)) {
        t_copy(1);
        t_copy(33);
        t_copy(1000);
    }
}
