/*
 * test=fullvgpu: the full-vGPU (docs/fullvgpu.md) through lib/fullvgpu.c.
 * The ring's own commands (nop, write64, dispatch copy, fences), kernel
 * streams through `execute` checked against the guest CPU (sgemm of 1, 7
 * and 33 in each transpose, bias add, relu, reduce, axpy, scale, copy with
 * overlapping ranges of one buffer), batches in flight around a 16-slot
 * ring, and one stream of 4096 kernels. The training job (test=train
 * gpu=full) covers the remaining kernels on real data.
 *   fullvgpu: <case> ... ok | FAIL (why)
 *   fullvgpu: N passed, M failed
 */
#include "malv/console.h"
#include "malv/cpuref.h"
#include "malv/format.h"
#include "malv/fullvgpu.h"
#include "malv/string.h"
#include "malv/test.h"

#define RING 16u
#define N 4096u

static struct fvgpu gpu;
static struct vgpu_stream stream;
static struct vgpu_buf a, b, c, d;
static unsigned passed, failed;

static uint64_t rng = 0x66756c6c76677075ull;

static float rnd(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return (float)((z ^ (z >> 31)) >> 40) * (1.0f / 16777216.0f) * 2.0f - 1.0f;
}

static double absd(double x) { return x < 0 ? -x : x; }

static void fill(float *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = rnd();
}

static void report(const char *name, bool ok, const char *why)
{
    if (ok) {
        passed++;
        printf("fullvgpu: %-40s ... ok\n", name);
    } else {
        failed++;
        printf("fullvgpu: %-40s ... FAIL (%s)\n", name, why);
    }
}

/* Runs the recorded stream; on error reports the case and returns false. */
static bool run(const char *name)
{
    uint32_t st = fvgpu_run(&gpu, &stream);
    if (st == FVGPU_OK)
        return true;
    if (st == FVGPU_ERR_FAULT) {
        fvgpu_print_fault("fullvgpu", &gpu);
        fvgpu_reset(&gpu);
    }
    report(name, false, fvgpu_error_name(st));
    return false;
}

static bool close(const float *got, const float *want, unsigned n, double tol)
{
    for (unsigned i = 0; i < n; i++) {
        double scale = absd(want[i]) > 1 ? absd(want[i]) : 1;
        if (!(absd((double)got[i] - want[i]) / scale <= tol)) {
            printf("fullvgpu:   element %u: got %f want %f\n", i, (double)got[i], (double)want[i]);
            return false;
        }
    }
    return true;
}

static void ring_commands(void)
{
    uint64_t *out = (uint64_t *)c.ptr;
    out[3] = 0;
    uint64_t fence = gpu.next_fence++;
    const uint64_t cmds[3][4] = {
        { FVGPU_NOP, 0, 0, 0 },
        { FVGPU_WRITE64, c.base + 24, 0x1122334455667788ull, 0 },
        { FVGPU_FENCE, fence, 0, 0 },
    };
    uint32_t st = fvgpu_submit(&gpu, cmds, 3);
    st = st ? st : fvgpu_wait(&gpu, fence);
    report("nop, write64, fence", st == 0 && out[3] == 0x1122334455667788ull, fvgpu_error_name(st));

    float *src = (float *)a.ptr, *dst = (float *)b.ptr;
    fill(src, 1024);
    memset(dst, 0, 4096);
    fence = gpu.next_fence++;
    const uint64_t copy[2][4] = {
        { (uint64_t)FVGPU_KERNEL_COPY << 32 | FVGPU_DISPATCH, a.base, b.base, 4096 },
        { FVGPU_FENCE, fence, 0, 0 },
    };
    st = fvgpu_submit(&gpu, copy, 2);
    st = st ? st : fvgpu_wait(&gpu, fence);
    report("dispatch copy (kernel 1, 4 KiB)", st == 0 && memcmp(src, dst, 4096) == 0, fvgpu_error_name(st));
}

static void sgemm_case(unsigned m, unsigned n, unsigned k, uint32_t transpose)
{
    float *A = (float *)a.ptr, *B = (float *)b.ptr, *C = (float *)c.ptr, *R = (float *)d.ptr;
    fill(A, m * k);
    fill(B, k * n);
    cpuref_sgemm(m, n, k, transpose, 1.0f, 0.0f, A, B, NULL, R);
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, m, n, k, transpose, 1.0f, 0.0f, vgpu_f32(&a, 0, m * k), vgpu_f32(&b, 0, k * n),
               vgpu_f32(&c, 0, m * n));
    char name[64];
    snprintf(name, sizeof name, "sgemm %ux%ux%u transpose %u", m, n, k, transpose);
    if (run(name))
        report(name, close(C, R, m * n, 1e-4), "mismatch");
}

static void elementwise(void)
{
    float *A = (float *)a.ptr, *B = (float *)b.ptr, *C = (float *)c.ptr, *R = (float *)d.ptr;
    unsigned rows = 33, cols = 7;
    fill(A, rows * cols);
    fill(B, cols);
    /* bias add then relu in place, then a per-column sum */
    for (unsigned i = 0; i < rows * cols; i++) {
        float v = A[i] + B[i % cols];
        R[i] = v > 0 ? v : 0;
    }
    vgpu_stream_reset(&stream);
    vgpu_bias_add(&stream, rows, cols, 1, vgpu_f32(&a, 0, rows * cols), vgpu_f32(&b, 0, cols));
    vgpu_relu(&stream, rows * cols, vgpu_f32(&a, 0, rows * cols), vgpu_f32(&a, 0, rows * cols));
    vgpu_reduce(&stream, VGPU_SUM, VGPU_PER_COLUMN, rows, cols, vgpu_f32(&a, 0, rows * cols), vgpu_f32(&c, 0, cols));
    if (!run("bias add, relu in place, reduce"))
        return;
    bool ok = close(A, R, rows * cols, 1e-6);
    for (unsigned j = 0; j < cols && ok; j++) {
        double sum = 0;
        for (unsigned i = 0; i < rows; i++)
            sum += R[i * cols + j];
        float want = (float)sum;
        ok = close(&C[j], &want, 1, 1e-5);
    }
    report("bias add, relu in place, reduce", ok, "mismatch");

    /* y += 0.5 x, then x *= 2 */
    static float x0[1000];
    fill(A, 1000);
    fill(B, 1000);
    memcpy(x0, A, sizeof x0);
    for (unsigned i = 0; i < 1000; i++)
        R[i] = B[i] + 0.5f * A[i];
    vgpu_stream_reset(&stream);
    vgpu_axpy(&stream, 1000, 0.5f, vgpu_f32(&a, 0, 1000), vgpu_f32(&b, 0, 1000));
    vgpu_scale(&stream, 1000, 2.0f, vgpu_f32(&a, 0, 1000));
    if (run("axpy, scale")) {
        bool fine = close(B, R, 1000, 1e-6);
        for (unsigned i = 0; i < 1000 && fine; i++)
            fine = A[i] == 2.0f * x0[i];
        report("axpy, scale", fine, "mismatch");
    }

    /* copy between overlapping ranges of one buffer: the first half onto the second */
    fill(C, 1024);
    memcpy(R, C, 512 * 4);
    vgpu_stream_reset(&stream);
    vgpu_copy(&stream, vgpu_f32(&c, 0, 512), vgpu_f32(&c, 512, 512));
    if (run("copy within one buffer"))
        report("copy within one buffer", memcmp(C + 512, R, 512 * 4) == 0 && memcmp(C, R, 512 * 4) == 0, "mismatch");
}

/* Six streams in flight around the 16-slot ring, then 100 more one at a time. */
static void ring_wrap(void)
{
    float *A = (float *)a.ptr;
    for (unsigned i = 0; i < 64; i++)
        A[i] = 1.0f + (float)i;
    static struct vgpu_stream doubling;
    if (!doubling.data && !vgpu_stream_init(&doubling, 4096)) {
        report("six streams in flight", false, "no memory");
        return;
    }
    vgpu_stream_reset(&doubling);
    vgpu_scale(&doubling, 64, 2.0f, vgpu_f32(&a, 0, 64));
    uint64_t fence = 0;
    uint32_t st = 0;
    for (unsigned i = 0; i < 6 && !st; i++)
        st = fvgpu_execute(&gpu, &doubling, &fence);
    st = st ? st : fvgpu_wait(&gpu, fence);
    bool ok = st == 0;
    for (unsigned i = 0; i < 64 && ok; i++)
        ok = A[i] == (1.0f + (float)i) * 64.0f;
    report("six streams in flight", ok, st ? fvgpu_error_name(st) : "wrong values");

    vgpu_stream_reset(&doubling);
    vgpu_scale(&doubling, 64, 0.5f, vgpu_f32(&a, 0, 64));
    for (unsigned i = 0; i < 100 && !st; i++)
        st = fvgpu_run(&gpu, &doubling);
    ok = st == 0;
    for (unsigned i = 0; i < 64 && ok; i++) {
        float want = (1.0f + (float)i) * 64.0f;
        for (unsigned j = 0; j < 100; j++)
            want *= 0.5f;
        ok = A[i] == want;
    }
    report("100 submissions around a 16-slot ring", ok, st ? fvgpu_error_name(st) : "wrong values");
    uint64_t last = gpu.completion[5];
    report("fences complete in order", last == gpu.next_fence - 1, "completion page fence");
}

static void big_stream(void)
{
    float *A = (float *)a.ptr;
    fill(A, 256);
    float want[256];
    memcpy(want, A, sizeof want);
    vgpu_stream_reset(&stream);
    for (unsigned i = 0; i < 4096; i++)
        vgpu_scale(&stream, 256, (i & 1) ? 0.5f : 2.0f, vgpu_f32(&a, 0, 256));
    if (run("one stream of 4096 kernels"))
        report("one stream of 4096 kernels", stream.count == 4096 && memcmp(A, want, sizeof want) == 0, "mismatch");
}

int test_fullvgpu(void)
{
    const char *why = fvgpu_open(&gpu, 0, RING);
    if (why) {
        printf("fullvgpu: open: %s\n", why);
        return 1;
    }
    uint32_t mask = fvgpu_reg(&gpu, FVGPU_OPCODE_MASK);
    printf("fullvgpu: ring %u slots, opcode mask 0x%x\n", RING, mask);
    if (fvgpu_buf_create(&gpu, &a, N * 4) || fvgpu_buf_create(&gpu, &b, N * 4) || fvgpu_buf_create(&gpu, &c, N * 4)
        || fvgpu_buf_create(&gpu, &d, N * 4) || !vgpu_stream_init(&stream, 256u << 10)) {
        printf("fullvgpu: out of memory\n");
        return 1;
    }
    report("opcode mask offers every compute opcode", mask == ((1u << VGPU_OP_COUNT) - 2), "mask");
    ring_commands();
    static const unsigned sizes[] = { 1, 7, 33 };
    for (unsigned i = 0; i < 3; i++)
        for (uint32_t t = 0; t < 4; t++)
            sgemm_case(sizes[i], sizes[(i + 1) % 3], sizes[(i + 2) % 3], t);
    elementwise();
    ring_wrap();
    big_stream();
    printf("fullvgpu: %u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
