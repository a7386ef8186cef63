/*
 * test=vgpuload: keeps the vGPU busy for a while, for sharing measurements.
 * `depth` fenced submissions (default 4) stay in flight, each a batch of
 * `batch` (default 4) 64x64x64 SGEMMs on HOST3D blobs, so the vGPU always has
 * work queued and its measured GPU time is what the scheduler grants it.
 * Runs `seconds` seconds (default 10; 1-3600), with a progress line each
 * second:
 *   vgpuload: 3 s, 1234 submissions
 * and ends with
 *   vgpuload: N submissions of B commands in T ms: X submissions/s
 *   vgpuload: round trip p50 A us p99 B us max C us (N samples)
 *   vgpuload: PASS
 * `think` (microseconds, default 0; 0-1000000) makes it an inference-like client
 * instead: after each submission completes, that slot waits a think time drawn
 * uniformly from [think/2, 3 think/2] (a fixed-seed generator) before it
 * submits again. The round trip (submit to fence signalled, the guest's TSC)
 * is what such a client feels: its own GPU time plus its wait behind others.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/vgpu.h"
#include "malv/x86.h"

#define MAX_DEPTH 16
#define N 64
#define VGPU_MSIX_VECTOR 0x60    /* control queue; config changes on 0x61 */

static struct vgpu gpu;
static struct vgpu_ctx ctx;
static struct vgpu_buf blob;
static struct vgpu_stream streams[MAX_DEPTH];

/* Round trips in 10 us buckets up to 500 ms (the last bucket holds the rest). */
#define LATENCY_BUCKET_US 10
#define LATENCY_BUCKETS 50000
static uint32_t latency[LATENCY_BUCKETS];
static uint64_t latency_samples, latency_max_us;

static void record_latency(uint64_t us)
{
    uint64_t bucket = us / LATENCY_BUCKET_US;
    latency[bucket < LATENCY_BUCKETS ? bucket : LATENCY_BUCKETS - 1]++;
    latency_samples++;
    if (us > latency_max_us)
        latency_max_us = us;
}

/* The upper edge of the bucket holding the p-th per-mille sample. */
static uint64_t latency_percentile(unsigned per_mille)
{
    uint64_t rank = (latency_samples * per_mille + 999) / 1000, seen = 0;
    for (unsigned b = 0; b < LATENCY_BUCKETS; b++) {
        seen += latency[b];
        if (seen >= rank && rank > 0)
            return (uint64_t)(b + 1) * LATENCY_BUCKET_US;
    }
    return latency_max_us;
}

/* splitmix64: think times that are the same in every run. */
static uint64_t think_state = 0x9e3779b97f4a7c15ull;
static uint64_t next_random(void)
{
    uint64_t z = (think_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int fail(const char *what, uint32_t st)
{
    vgpu_print_failure("vgpuload", what, &gpu, st);
    printf("vgpuload: FAIL\n");
    return 1;
}

static bool argument(const char *name, uint64_t *value, uint64_t low, uint64_t high)
{
    char arg[24];
    if (!cmdline_get(name, arg, sizeof arg))
        return true;
    if (parse_u64(arg, value, NULL) && *value >= low && *value <= high)
        return true;
    printf("vgpuload: bad %s '%s' (%llu-%llu)\n", name, arg, (unsigned long long)low, (unsigned long long)high);
    return false;
}

int test_vgpuload(void)
{
    uint64_t seconds = 10, depth = 4, batch = 4, think = 0;
    if (!argument("seconds", &seconds, 1, 3600) || !argument("depth", &depth, 1, MAX_DEPTH) ||
        !argument("batch", &batch, 1, 256) || !argument("think", &think, 0, 1000000))
        return 2;
    const char *why = vgpu_open_msix(&gpu, 0, VGPU_MSIX_VECTOR);
    if (why) {
        printf("vgpuload: open: %s\n", why);
        return 1;
    }
    uint64_t hz = tsc_calibrate();
    if (!hz) {
        printf("vgpuload: TSC calibration failed (no PIT interrupts)\n");
        return 1;
    }
    uint32_t st = vgpu_ctx_create(&gpu, &ctx, "vgpuload", 0);
    if (st)
        return fail("context", st);
    /* A, B and C, each N x N floats. */
    if ((st = vgpu_buf_create(&ctx, &blob, 3 * N * N * 4, VGPU_MEM_HOST)))
        return fail("blob", st);
    for (unsigned i = 0; i < 3 * N * N; i++)
        vgpu_f32p(&blob)[i] = (float)(i % 7) * 0.125f;
    if ((st = vgpu_buf_upload(&blob, 0, 3 * N * N * 4)))
        return fail("upload", st);
    for (unsigned d = 0; d < depth; d++) {
        if (!vgpu_stream_init(&streams[d], (uint32_t)batch * 96 + 64))
            return fail("stream", VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
        for (unsigned i = 0; i < batch; i++)
            vgpu_sgemm(&streams[d], N, N, N, 0, 1.0f, 0.0f, vgpu_f32(&blob, 0, N * N), vgpu_f32(&blob, N * N, N * N),
                       vgpu_f32(&blob, 2 * N * N, N * N));
    }
    printf("vgpuload: %llu s, %llu in flight, batches of %llu sgemm %ux%ux%u, think %llu us, backend %s\n",
           (unsigned long long)seconds, (unsigned long long)depth, (unsigned long long)batch, N, N, N,
           (unsigned long long)think, vgpu_capset(&gpu)->backend == 1 ? "vulkan" : "cpu");
    struct vgpu_fence fences[MAX_DEPTH];
    bool busy[MAX_DEPTH] = { false };
    uint64_t submitted_at[MAX_DEPTH] = { 0 }, ready_at[MAX_DEPTH] = { 0 };
    uint64_t start = rdtsc(), end = start + seconds * hz, next_report = start + hz, done = 0;
    unsigned slot = 0;
    for (;;) {
        uint64_t now = rdtsc();
        bool more = now < end;
        if (busy[slot]) {
            if ((st = vgpu_wait(&fences[slot])))
                return fail("submission", st);
            busy[slot] = false;
            done++;
            uint64_t completed = rdtsc();
            record_latency((completed - submitted_at[slot]) * 1000000 / hz);
            if (think) {
                uint64_t us = think / 2 + next_random() % (think + 1);
                ready_at[slot] = completed + us * hz / 1000000;
            }
        } else if (!more) {
            bool any = false;
            for (unsigned d = 0; d < depth; d++)
                any = any || busy[d];
            if (!any)
                break;
        }
        if (more && !busy[slot] && rdtsc() >= ready_at[slot]) {
            submitted_at[slot] = rdtsc();
            if ((st = vgpu_submit(&ctx, &streams[slot], &fences[slot])))
                return fail("submit", st);
            busy[slot] = true;
        }
        if (now >= next_report && more) {
            printf("vgpuload: %llu s, %llu submissions\n", (unsigned long long)((now - start) / hz), (unsigned long long)done);
            next_report += hz;
        }
        slot = (slot + 1) % (unsigned)depth;
    }
    uint64_t ms = (rdtsc() - start) * 1000 / hz;
    printf("vgpuload: %llu submissions of %llu commands in %llu ms: %llu submissions/s\n", (unsigned long long)done,
           (unsigned long long)batch, (unsigned long long)ms, (unsigned long long)(ms ? done * 1000 / ms : 0));
    printf("vgpuload: round trip p50 %llu us p99 %llu us max %llu us (%llu samples)\n",
           (unsigned long long)latency_percentile(500), (unsigned long long)latency_percentile(990),
           (unsigned long long)latency_max_us, (unsigned long long)latency_samples);
    vgpu_buf_destroy(&blob);
    vgpu_ctx_destroy(&ctx);
    printf("vgpuload: PASS\n");
    return 0;
}
