/*
 * test=fullvgpu: the full-vGPU (docs/fullvgpu.md) through lib/fullvgpu.c.
 *  - the ring's own commands: nop, write64 (lands in guest memory), fence,
 *    dispatch of kernel 1 (copy);
 *  - every compute opcode OPCODE_MASK offers, through `execute`, with the
 *    checks test=vgpu runs (kernel_checks.c: deterministic inputs, sizes 1, 7,
 *    33 among them, against the guest CPU);
 *  - a copy between overlapping halves of one buffer;
 *  - fence ordering: eight executes + fences in flight, every fence value
 *    seen on the completion page means everything before it is done;
 *  - six streams in flight, 100 submissions around a 16-slot ring, one
 *    stream of 4096 kernels, a wait that sleeps on MSI-X vector 0, waits
 *    for a fence that never comes ending with a time-out.
 *   fullvgpu: <case> ... ok (detail) | FAILED (detail)
 *   fullvgpu: N passed, M failed
 */
#include "malv/console.h"
#include "malv/format.h"
#include "malv/fullvgpu.h"
#include "malv/intr.h"
#include "malv/string.h"
#include "malv/test.h"

#include "kernel_checks.h"

#define RING 16u
#define ORDERED 8u

static struct fvgpu gpu;
static struct vgpu_stream stream;
static struct vgpu_buf buf[KC_NBUF];

/* After a fault: print the FAULT_* registers and reset, so the next case starts on a running vGPU. */
static uint32_t recover(uint32_t st)
{
    if (st == FVGPU_ERR_FAULT) {
        fvgpu_print_fault("fullvgpu", &gpu);
        fvgpu_reset(&gpu);
    }
    return st;
}

/* kc's runner: execute + fence, waited for. */
static uint32_t run(struct vgpu_stream *s)
{
    return recover(fvgpu_run(&gpu, s));
}

static void status_result(const char *what, const char *shape, uint32_t st, bool ok, const char *detail)
{
    if (st)
        kc_result(false, what, shape, fvgpu_error_name(recover(st)));
    else
        kc_result(ok, what, shape, detail);
}

static void ring_commands(void)
{
    uint64_t *out = (uint64_t *)buf[2].ptr;
    out[3] = 0;
    uint64_t fence = gpu.next_fence++;
    const uint64_t cmds[3][4] = {
        { FVGPU_NOP, 0, 0, 0 },
        { FVGPU_WRITE64, buf[2].base + 24, 0x1122334455667788ull, 0 },
        { FVGPU_FENCE, fence, 0, 0 },
    };
    uint32_t st = fvgpu_submit(&gpu, cmds, 3);
    st = st ? st : fvgpu_wait(&gpu, fence);
    status_result("ring", "nop, write64, fence", st, out[3] == 0x1122334455667788ull,
                  out[3] == 0x1122334455667788ull ? "write64 landed" : "write64 missing");

    float *src = B(0), *dst = B(1);
    kc_fill(src, 1024, -1, 1);
    kc_poison(dst, 1024);
    fence = gpu.next_fence++;
    const uint64_t copy[2][4] = {
        { (uint64_t)FVGPU_KERNEL_COPY << 32 | FVGPU_DISPATCH, buf[0].base, buf[1].base, 4096 },
        { FVGPU_FENCE, fence, 0, 0 },
    };
    st = fvgpu_submit(&gpu, copy, 2);
    st = st ? st : fvgpu_wait(&gpu, fence);
    bool same = memcmp(src, dst, 4096) == 0;
    status_result("dispatch", "kernel 1 (copy) 4096 bytes", st, same, same ? "equal" : "differs");
}

/* A stream copy from the first half of one buffer onto its second half. */
static void overlapping_copy(void)
{
    float *c = B(2);
    kc_fill(c, 1024, -1, 1);
    memcpy(kc_ref0, c, 512 * 4);
    vgpu_stream_reset(&stream);
    vgpu_copy(&stream, R(2, 512), vgpu_f32(&buf[2], 512, 512));
    uint32_t st = fvgpu_run(&gpu, &stream);
    bool ok = !st && memcmp(c + 512, kc_ref0, 512 * 4) == 0 && memcmp(c, kc_ref0, 512 * 4) == 0;
    status_result("copy", "512 words within one buffer", st, ok, ok ? "max err 0.0e+00, tol 0e+00" : "mismatch");
}

/*
 * Eight executes, each copying its own 64 words and each followed by its
 * fence, all submitted before any wait (the 16-slot ring fills up, so the
 * submissions also wait for ring space). While they complete, every fence
 * value the completion page shows must have its copy and all earlier ones
 * done, and the value never goes backwards.
 */
static void fence_ordering(void)
{
    static struct vgpu_stream s[ORDERED];
    float *src = B(3), *dst = B(4);
    kc_fill(src, ORDERED * 64, -1, 1);
    kc_poison(dst, ORDERED * 64);
    uint64_t fences[ORDERED];
    uint32_t st = 0;
    for (unsigned i = 0; i < ORDERED && !st; i++) {
        if (!s[i].data && !vgpu_stream_init(&s[i], 1024)) {
            kc_result(false, "fence ordering", "", "out of DMA memory");
            return;
        }
        vgpu_stream_reset(&s[i]);
        vgpu_copy(&s[i], vgpu_f32(&buf[3], i * 64, 64), vgpu_f32(&buf[4], i * 64, 64));
        st = fvgpu_execute(&gpu, &s[i], &fences[i]);
    }
    uint64_t last = 0, observations = 0;
    bool ordered = true;
    while (!st && last < fences[ORDERED - 1]) {
        uint64_t seen = gpu.completion[5];
        if (seen < last)
            ordered = false;
        last = seen;
        observations++;
        for (unsigned i = 0; i < ORDERED && ordered; i++)
            if (fences[i] <= seen && memcmp(dst + i * 64, src + i * 64, 64 * 4) != 0)
                ordered = false;
        if (!ordered)
            break;
        if (seen < fences[ORDERED - 1])
            st = fvgpu_wait(&gpu, seen + 1);
    }
    char detail[96];
    snprintf(detail, sizeof detail, "fences %llu..%llu, %llu looks", (unsigned long long)fences[0],
             (unsigned long long)fences[ORDERED - 1], (unsigned long long)observations);
    status_result("fence ordering", "8 executes + fences in flight", st, ordered, ordered ? detail : "a fence came early");
}

/* Six streams in flight around the 16-slot ring, then 100 more one at a time. */
static void ring_wrap(void)
{
    float *x = B(0);
    for (unsigned i = 0; i < 64; i++)
        x[i] = 1.0f + (float)i;
    static struct vgpu_stream doubling;
    if (!doubling.data && !vgpu_stream_init(&doubling, 4096)) {
        kc_result(false, "ring", "six streams in flight", "out of DMA memory");
        return;
    }
    vgpu_stream_reset(&doubling);
    vgpu_scale(&doubling, 64, 2.0f, R(0, 64));
    uint64_t fence = 0;
    uint32_t st = 0;
    for (unsigned i = 0; i < 6 && !st; i++)
        st = fvgpu_execute(&gpu, &doubling, &fence);
    st = st ? st : fvgpu_wait(&gpu, fence);
    bool ok = true;
    for (unsigned i = 0; i < 64 && ok; i++)
        ok = x[i] == (1.0f + (float)i) * 64.0f;
    status_result("ring", "six executes of one stream in flight", st, ok, ok ? "x * 2^6" : "wrong values");

    vgpu_stream_reset(&doubling);
    vgpu_scale(&doubling, 64, 0.5f, R(0, 64));
    uint32_t tail0 = gpu.tail;
    for (unsigned i = 0; i < 100 && !st; i++)
        st = fvgpu_run(&gpu, &doubling);
    ok = true;
    for (unsigned i = 0; i < 64 && ok; i++) {
        float want = (1.0f + (float)i) * 64.0f;
        for (unsigned j = 0; j < 100; j++)
            want *= 0.5f;
        ok = x[i] == want;
    }
    char detail[96];
    snprintf(detail, sizeof detail, "%u ring laps, tail %u -> %u", 200 / RING, tail0, gpu.tail);
    status_result("ring", "100 submissions around a 16-slot ring", st, ok, ok ? detail : "wrong values");
    ok = gpu.completion[5] == gpu.next_fence - 1;
    snprintf(detail, sizeof detail, "completion page %llu, last fence %llu", (unsigned long long)gpu.completion[5],
             (unsigned long long)(gpu.next_fence - 1));
    kc_result(ok, "ring", "last fence on the completion page", detail);
}

static void big_stream(void)
{
    float *x = B(0);
    kc_fill(x, 256, -1, 1);
    memcpy(kc_ref0, x, 256 * 4);
    vgpu_stream_reset(&stream);
    for (unsigned i = 0; i < FVGPU_MAX_STREAM_COMMANDS; i++)
        vgpu_scale(&stream, 256, (i & 1) ? 0.5f : 2.0f, R(0, 256));
    char shape[64];
    snprintf(shape, sizeof shape, "%u kernels, %u bytes", stream.count, stream.len);
    uint32_t st = stream.full ? FVGPU_ERR_BAD_STREAM : fvgpu_run(&gpu, &stream);
    bool ok = stream.count == FVGPU_MAX_STREAM_COMMANDS && memcmp(x, kc_ref0, 256 * 4) == 0;
    status_result("execute", shape, st, ok, ok ? "x * (2 * 0.5)^2048" : "mismatch");
}

/* The same fence wait, sleeping until MSI-X vector 0 instead of spinning. */
static void sleeping_wait(void)
{
    float *x = B(0);
    kc_fill(x, 64, -1, 1);
    for (unsigned i = 0; i < 64; i++)
        kc_ref0[i] = x[i] * -1.5f;
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 64, -1.5f, R(0, 64));
    uint64_t irqs = irq_count(gpu.vector), sleeps = gpu.sleeps;
    gpu.poll = false;
    uint32_t st = 0;
    for (unsigned i = 0; i < 4 && !st; i++) {
        if (i)
            for (unsigned j = 0; j < 64; j++)
                kc_ref0[j] *= -1.5f;
        st = fvgpu_run(&gpu, &stream);
    }
    gpu.poll = true;
    double err = st ? 1e30 : kc_max_err(x, kc_ref0, 64);
    char detail[96];
    snprintf(detail, sizeof detail, "%llu sleeps, %llu completion interrupts",
             (unsigned long long)(gpu.sleeps - sleeps), (unsigned long long)(irq_count(gpu.vector) - irqs));
    /* Each wait either found its fence at once or slept until an interrupt came. */
    status_result("wait", "4 executes, sleeping on MSI-X", st, err == 0 && (gpu.sleeps == sleeps || irq_count(gpu.vector) > irqs),
                  detail);
}

/*
 * A fence nobody submitted: the wait must give up after its limit (shortened
 * here to ~0.2 s) rather than hang, polling and sleeping; a sleeping wait is
 * woken by its LAPIC alarm (vector + 2) since no completion comes.
 */
static void timeouts(void)
{
    uint64_t saved = gpu.timeout_cycles, never = gpu.next_fence + 1000;
    gpu.timeout_cycles = 500000000ull;
    uint32_t polled = fvgpu_wait(&gpu, never);
    uint64_t alarms = irq_count((uint8_t)(gpu.vector + 2));
    gpu.poll = false;
    uint32_t slept = fvgpu_wait(&gpu, never);
    gpu.poll = true;
    gpu.timeout_cycles = saved;
    alarms = irq_count((uint8_t)(gpu.vector + 2)) - alarms;
    char detail[96];
    snprintf(detail, sizeof detail, "polling: %s, sleeping: %s after %llu alarms", fvgpu_error_name(polled),
             fvgpu_error_name(slept), (unsigned long long)alarms);
    kc_result(polled == FVGPU_ERR_TIMEOUT && slept == FVGPU_ERR_TIMEOUT && alarms > 0, "wait",
              "a fence never submitted times out", detail);
}

int test_fullvgpu(void)
{
    const char *why = fvgpu_open(&gpu, 0, RING);
    if (why) {
        printf("fullvgpu: open: %s\n", why);
        printf("fullvgpu: 0 passed, 1 failed\n");
        return 1;
    }
    uint32_t mask = fvgpu_reg(&gpu, FVGPU_OPCODE_MASK);
    printf("fullvgpu: ring %u slots (max %u), opcode mask 0x%x\n", RING, fvgpu_reg(&gpu, FVGPU_RING_SIZE_MAX), mask);
    uint32_t st = 0;
    for (unsigned i = 0; i < KC_NBUF && !st; i++)
        st = fvgpu_buf_create(&gpu, &buf[i], KC_BUF_BYTES);
    const struct kc_target target = { "fullvgpu", buf, &stream, run, fvgpu_error_name, mask };
    if (st || !kc_init(&target, 0x5eed) || !vgpu_stream_init(&stream, 256u << 10)) {
        printf("fullvgpu: setup: %s\n", st ? fvgpu_error_name(st) : "out of DMA memory");
        printf("fullvgpu: 0 passed, 1 failed\n");
        return 1;
    }
    ring_commands();
    kc_kernels();
    overlapping_copy();
    fence_ordering();
    ring_wrap();
    big_stream();
    sleeping_wait();
    timeouts();
    printf("fullvgpu: %u passed, %u failed\n", kc_passed, kc_failed);
    return kc_failed ? 1 : 0;
}
