/*
 * test=vgpubench: para-vGPU submission cost. Batches of 1, 4, 16, 64 and 256
 * commands of a small kernel (scale of 64 floats in a HOST3D blob, so no
 * guest-page sync is involved) go out as one fenced SUBMIT_3D each:
 *   sync  - submit, wait for the fence, repeat (latency);
 *   qd8   - up to 8 batches in flight, each from its own stream (throughput).
 * Each row runs for `bench_ms` milliseconds (default 300) or 20000
 * submissions. Timed with the TSC (calibrated against the PIT); nothing is
 * printed inside a timed loop. One line per batch size:
 *   vgpubench: batch N: sync X us/submission Y us/command, qd8 X us/submission Y us/command
 */
#include "malv/bench.h"
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/vgpu.h"
#include "malv/x86.h"

#define QD 8
#define MAX_SUBMISSIONS 20000u

static struct vgpu gpu;
static struct vgpu_ctx ctx;
static struct vgpu_buf blob;
static struct vgpu_stream streams[QD];

struct row {
    uint64_t submissions, cycles;
    uint32_t status;
};

static void record(struct vgpu_stream *s, unsigned batch)
{
    vgpu_stream_reset(s);
    for (unsigned i = 0; i < batch; i++)
        vgpu_scale(s, 64, (i & 1) ? 2.0f : 0.5f, vgpu_f32(&blob, 0, 64));
}

static struct row run(unsigned batch, unsigned depth, uint64_t budget)
{
    struct row r = { 0 };
    struct vgpu_fence f[QD];
    bool busy[QD] = { false };
    for (unsigned i = 0; i < depth; i++)
        record(&streams[i], batch);
    uint64_t t0 = rdtsc(), sent = 0;
    unsigned next = 0;
    for (;;) {
        bool more = sent < MAX_SUBMISSIONS && rdtsc() - t0 < budget;
        if (busy[next]) {
            r.status = vgpu_wait(&f[next]);
            busy[next] = false;
            if (r.status)
                break;
            r.submissions++;
        } else if (!more) {
            /* Drain the others. */
            bool any = false;
            for (unsigned i = 0; i < depth; i++)
                any = any || busy[i];
            if (!any)
                break;
        }
        if (more) {
            r.status = vgpu_submit(&ctx, &streams[next], &f[next]);
            if (r.status)
                break;
            busy[next] = true;
            sent++;
        }
        next = (next + 1) % depth;
    }
    r.cycles = rdtsc() - t0;
    for (unsigned i = 0; i < depth; i++)
        if (busy[i])
            vgpu_wait(&f[i]);
    return r;
}

int test_vgpubench(void)
{
    const char *why = vgpu_open(&gpu, 0);
    if (why) {
        printf("vgpubench: open: %s\n", why);
        return 1;
    }
    uint64_t hz = tsc_calibrate();
    if (!hz) {
        printf("vgpubench: TSC calibration failed (no PIT interrupts)\n");
        return 1;
    }
    char arg[24] = "";
    uint64_t ms = 300;
    if (cmdline_get("bench_ms", arg, sizeof arg) && (!parse_u64(arg, &ms, NULL) || ms == 0 || ms > 60000)) {
        printf("vgpubench: bad bench_ms '%s'\n", arg);
        return 2;
    }
    uint32_t st = vgpu_ctx_create(&gpu, &ctx, "vgpubench", 0);
    if (!st)
        st = vgpu_buf_create(&ctx, &blob, 4096, VGPU_MEM_HOST);
    if (!st)
        st = vgpu_buf_upload(&blob, 0, 256);
    for (unsigned i = 0; i < QD && !st; i++)
        if (!vgpu_stream_init(&streams[i], 256 * 48 + 64))
            st = VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY;
    if (st) {
        printf("vgpubench: setup: %s\n", vgpu_status_name(st));
        return 1;
    }
    printf("vgpubench: backend %s, tsc %llu MHz, %llu ms per row, kernel scale(64) on a HOST3D blob\n",
           vgpu_capset(&gpu)->backend == 1 ? "vulkan" : "cpu", (unsigned long long)(hz / 1000000),
           (unsigned long long)ms);
    static const unsigned sizes[] = { 1, 4, 16, 64, 256 };
    uint64_t budget = hz / 1000 * ms;
    int rc = 0;
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned b = sizes[i];
        run(b, 1, hz / 100);    /* warm up: pipelines, caches */
        struct row sync = run(b, 1, budget), qd = run(b, QD, budget);
        if (sync.status || qd.status) {
            printf("vgpubench: batch %u: %s\n", b, vgpu_status_name(sync.status ? sync.status : qd.status));
            rc = 1;
            continue;
        }
        bench_print_batch_row("vgpubench", b, sync.cycles, sync.submissions, QD, qd.cycles, qd.submissions, hz);
    }
    vgpu_buf_destroy(&blob);
    vgpu_ctx_destroy(&ctx);
    printf("vgpubench: done\n");
    return rc;
}
