/*
 * test=vgpu: the para-vGPU end to end through lib/vgpu.c. Every opcode of
 * compute stream v1 the capset offers runs on the vGPU on deterministic
 * pseudo-random inputs (odd sizes 1, 7, 33 among them) and is compared with
 * the same computation on the guest CPU in plain C (double accumulation,
 * libm-free exp/log/tanh; the checks live in kernel_checks.c, which
 * test=fullvgpu runs on the full-vGPU too). One line per kernel and shape:
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
#include "malv/format.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/vgpu.h"

#include "kernel_checks.h"

#define NBUF KC_NBUF

static struct vgpu gpu;
static struct vgpu_ctx ctx_a, ctx_b;
static struct vgpu_buf buf[NBUF];       /* context A's workspace, GUEST blobs */
static struct vgpu_stream stream;

/* ---- beyond single kernels ---- */

static void status_line(const char *what, const char *shape, uint32_t got, uint32_t want)
{
    char detail[96];
    snprintf(detail, sizeof detail, "%s", vgpu_status_name(got));
    if (got != want)
        snprintf(detail, sizeof detail, "got %s, want %s", vgpu_status_name(got), vgpu_status_name(want));
    kc_result(got == want, what, shape, detail);
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
    kc_fill(vgpu_f32p(&a), m * k, -1, 1);
    kc_fill(vgpu_f32p(&b), k * n, -1, 1);
    st = vgpu_buf_upload(&a, 0, a.size);
    if (!st)
        st = vgpu_buf_upload(&b, 0, b.size);
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            double acc = 0;
            for (uint32_t q = 0; q < k; q++)
                acc += (double)vgpu_f32p(&a)[i * k + q] * vgpu_f32p(&b)[q * n + j];
            kc_ref0[i * n + j] = (float)acc;
        }
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, m, n, k, 0, 1, 0, vgpu_f32(&a, 0, m * k), vgpu_f32(&b, 0, k * n), vgpu_f32(&c, 0, m * n));
    if (!st)
        st = vgpu_run(&ctx_a, &stream);
    kc_poison(vgpu_f32p(&c), m * n);
    /* Download in two pieces (bytes [0, 100) and the rest) to exercise offsets. */
    if (!st)
        st = vgpu_buf_download(&c, 0, 100);
    if (!st)
        st = vgpu_buf_download(&c, 100, c.size - 100);
    if (st) {
        status_line("host3d sgemm", "33x7x7", st, 0);
        return;
    }
    double err = kc_max_err(vgpu_f32p(&c), kc_ref0, m * n);
    char detail[64];
    snprintf(detail, sizeof detail, "max err %.1e, tol 1e-04", err);
    kc_result(err <= 1e-4, "host3d sgemm", "33x7x7 upload/download", detail);
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
    kc_fill(v, vec * nvec, -1, 1);
    kc_fill(acc, vec, -1, 1);
    memcpy(kc_ref0, v, vec * nvec * 4);
    memcpy(kc_ref1, acc, vec * 4);
    vgpu_stream_reset(&stream);
    for (uint32_t j = 0; j < cmds / 2; j++) {
        uint32_t i = j % nvec;
        float a = 1.0f + (float)((int)(j % 7) - 3) / 64.0f, b = 1.0f / (float)(1 + j % 5);
        vgpu_scale(&stream, vec, a, vgpu_f32(&buf[0], i * vec, vec));
        vgpu_axpy(&stream, vec, b, vgpu_f32(&buf[0], i * vec, vec), R(1, vec));
        for (uint32_t e = 0; e < vec; e++) {
            kc_ref0[i * vec + e] = a * kc_ref0[i * vec + e];
            kc_ref1[e] = b * kc_ref0[i * vec + e] + kc_ref1[e];
        }
    }
    char shape[64], detail[96];
    snprintf(shape, sizeof shape, "%u commands, %u bytes", stream.count, stream.len);
    uint32_t st = stream.full ? VIRTIO_GPU_STATUS_TOO_BIG : vgpu_run(&ctx_a, &stream);
    if (st) {
        snprintf(detail, sizeof detail, "submit: %s", vgpu_status_name(st));
        kc_result(false, "batch", shape, detail);
        return;
    }
    double e0 = kc_max_err(v, kc_ref0, vec * nvec), e1 = kc_max_err(acc, kc_ref1, vec);
    double err = e0 > e1 ? e0 : e1;
    snprintf(detail, sizeof detail, "max err %.1e, tol 1e-04", err);
    kc_result(err <= 1e-4, "batch", shape, detail);
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
                kc_result(false, "two contexts", "", "out of DMA memory");
                return;
            }
        ready = true;
    }
    float *xa = B(4), *ya = B(5), *xb = vgpu_f32p(bx), *yb = vgpu_f32p(by);
    kc_fill(xa, n, -1, 1);
    kc_fill(ya, n, -1, 1);
    kc_fill(xb, n, -1, 1);
    kc_fill(yb, n, -1, 1);
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
        kc_result(false, "two contexts", "8+8 batches in flight", detail);
        return;
    }
    double err = 0, e;
    if ((e = kc_max_err(xa, rxa, n)) > err) err = e;
    if ((e = kc_max_err(ya, rya, n)) > err) err = e;
    if ((e = kc_max_err(xb, rxb, n)) > err) err = e;
    if ((e = kc_max_err(yb, ryb, n)) > err) err = e;
    snprintf(detail, sizeof detail, "max err %.1e, tol 1e-05, %u in flight, fences A %llu B %llu", err,
             inflight, (unsigned long long)ctx_a.last_signalled, (unsigned long long)ctx_b.last_signalled);
    kc_result(err <= 1e-5, "two contexts", "8+8 batches interleaved", detail);
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
            kc_result(false, "refusals", "", "out of DMA memory");
            return;
        }
        ready = true;
    }
    uint32_t st = virtio_gpu_ctx_attach(&gpu.dev, ctx_b.id, buf[0].id, false);
    status_line("attach foreign resource", "A's blob to B (allowed)", st, 0);

    const uint32_t m = 7, n = 33, k = 7;
    kc_fill(B(0), m * k, -1, 1);
    kc_fill(B(1), k * n, -1, 1);
    kc_poison(B(2), m * n);
    kc_poison(B(3), m * n);
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            double acc = 0;
            for (uint32_t q = 0; q < k; q++)
                acc += (double)B(0)[i * k + q] * B(1)[q * n + j];
            kc_ref0[i * n + j] = (float)acc;
            kc_ref1[i * n + j] = (float)acc > 0 ? (float)acc : 0;
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
    double err = sta ? 1e30 : kc_max_err(B(2), kc_ref0, m * n);
    double e1 = sta ? 1e30 : kc_max_err(B(3), kc_ref1, m * n);
    if (e1 > err)
        err = e1;
    snprintf(detail, sizeof detail, "%s, max err %.1e, tol 1e-04", vgpu_status_name(sta), err);
    kc_result(!sta && err <= 1e-4, "A beside refusals", "sgemm 7x33x7 + relu", detail);
    /* Nothing of the refused batches ran: bx[0] untouched by sb[2]'s valid first command. */
    snprintf(detail, sizeof detail, "bx[0] %s", vgpu_f32p(bx)[0] == bx0 ? "unchanged" : "CHANGED");
    kc_result(vgpu_f32p(bx)[0] == bx0, "refused batch ran nothing", "scale before opcode 99", detail);
    status_line("transfer of A's resource", "by B", virtio_gpu_transfer(&gpu.dev, ctx_b.id, buf[0].id, true, 0, 4, 0),
                VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);

    /* B still computes. */
    kc_fill(vgpu_f32p(by), 7, -1, 1);
    for (unsigned i = 0; i < 7; i++)
        kc_ref0[i] = vgpu_f32p(by)[i] * 3.0f;
    vgpu_stream_reset(&sb[0]);
    vgpu_scale(&sb[0], 7, 3.0f, vgpu_f32(by, 0, 7));
    st = vgpu_run(&ctx_b, &sb[0]);
    err = st ? 1e30 : kc_max_err(vgpu_f32p(by), kc_ref0, 7);
    snprintf(detail, sizeof detail, "%s, max err %.1e, tol 0", vgpu_status_name(st), err);
    kc_result(!st && err == 0, "B after refusals", "scale 7", detail);
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

static uint32_t run_a(struct vgpu_stream *s)
{
    return vgpu_run(&ctx_a, s);
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

    uint32_t st = vgpu_ctx_create(&gpu, &ctx_a, "vgpu-test-a", 0);
    if (!st)
        st = vgpu_ctx_create(&gpu, &ctx_b, "vgpu-test-b", 5);
    for (unsigned i = 0; i < NBUF && !st; i++)
        st = vgpu_buf_create(&ctx_a, &buf[i], KC_BUF_BYTES, VGPU_MEM_GUEST);
    static struct vgpu_buf bx, by;
    if (!st)
        st = vgpu_buf_create(&ctx_b, &bx, 4096, VGPU_MEM_GUEST);
    if (!st)
        st = vgpu_buf_create(&ctx_b, &by, 4096, VGPU_MEM_GUEST);
    const struct kc_target target = { "vgpu", buf, &stream, run_a, vgpu_status_name, cap->opcode_mask };
    if (st || !kc_init(&target, 0x5eed) || !vgpu_stream_init(&stream, 256 * 1024)) {
        printf("vgpu: setup: %s\n", st ? vgpu_status_name(st) : "out of DMA memory");
        printf("vgpu: 0 passed, 1 failed\n");
        return 1;
    }

    kc_kernels();
    host3d();
    big_batch();
    two_contexts(&bx, &by);
    refusals(&bx, &by);
    teardown(&bx, &by);

    if (virtio_gpu_error(&gpu.dev)) {
        printf("vgpu: device: %s\n", virtio_gpu_error(&gpu.dev));
        kc_failed++;
    }
    printf("vgpu: %u passed, %u failed\n", kc_passed, kc_failed);
    return kc_failed ? 1 : 0;
}
