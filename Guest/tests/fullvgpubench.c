/*
 * test=fullvgpubench: full-vGPU submission cost, the twin of test=vgpubench
 * on identical work: batches of 1, 4, 16, 64 and 256 `scale` kernels of 64
 * floats, each batch one `execute` + fence on the ring:
 *   sync  - submit, wait for the fence, repeat (latency);
 *   qd8   - up to 8 batches in flight, each from its own stream (throughput).
 * Like a real driver reclaiming ring space, every submission also reads
 * RING_HEAD once (a register read: free when the MMIO bitmap leaves it to
 * the virtual function, a userspace exit when it traps). Fences are polled,
 * as vgpubench polls. Each row runs `bench_ms` ms (default 300) or 20000
 * submissions. One line per batch size, in vgpubench's format:
 *   fullvgpubench: batch N: sync X us/submission Y us/command (n), qd8 X us/submission Y us/command (n)
 */
#include "malv/bench.h"
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/fullvgpu.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/x86.h"

#define QD 8
#define MAX_SUBMISSIONS 20000u

static struct fvgpu gpu;
static struct vgpu_buf blob;
static struct vgpu_stream streams[QD];

struct measurement {
    uint64_t submissions, cycles;
    uint32_t status;
};

static struct measurement measure(unsigned batch, unsigned depth, uint64_t budget)
{
    struct measurement m = { 0 };
    uint64_t fences[QD] = { 0 };
    for (unsigned i = 0; i < depth; i++) {
        vgpu_stream_reset(&streams[i]);
        for (unsigned k = 0; k < batch; k++)
            vgpu_scale(&streams[i], 64, (k & 1) ? 2.0f : 0.5f, vgpu_f32(&blob, 0, 64));
    }
    uint64_t t0 = rdtsc();
    for (uint64_t sent = 0;; sent++) {
        unsigned slot = (unsigned)(sent % depth);
        if (fences[slot]) {
            if ((m.status = fvgpu_wait(&gpu, fences[slot])))
                break;
            fences[slot] = 0;
            m.submissions++;
        }
        if (sent >= MAX_SUBMISSIONS || rdtsc() - t0 >= budget)
            break;
        if ((m.status = fvgpu_execute(&gpu, &streams[slot], &fences[slot])))
            break;
        gpu.head_seen = fvgpu_reg(&gpu, FVGPU_RING_HEAD);
        gpu.head_reads++;
    }
    for (unsigned i = 0; i < depth && !m.status; i++)
        if (fences[i] && !(m.status = fvgpu_wait(&gpu, fences[i])))
            m.submissions++;
    m.cycles = rdtsc() - t0;
    return m;
}

int test_fullvgpubench(void)
{
    const char *why = fvgpu_open(&gpu, 0, 256);
    if (why) {
        printf("fullvgpubench: open: %s\n", why);
        return 1;
    }
    gpu.poll = true;
    uint64_t hz = tsc_calibrate();
    if (!hz) {
        printf("fullvgpubench: TSC calibration failed (no PIT interrupts)\n");
        return 1;
    }
    char arg[24] = "";
    uint64_t ms = 300;
    if (cmdline_get("bench_ms", arg, sizeof arg) && (!parse_u64(arg, &ms, NULL) || ms == 0 || ms > 60000)) {
        printf("fullvgpubench: bad bench_ms '%s'\n", arg);
        return 2;
    }
    if (fvgpu_buf_create(&gpu, &blob, 4096)) {
        printf("fullvgpubench: out of memory\n");
        return 1;
    }
    for (unsigned i = 0; i < QD; i++)
        if (!vgpu_stream_init(&streams[i], 256 * 48 + 64)) {
            printf("fullvgpubench: out of memory\n");
            return 1;
        }
    printf("fullvgpubench: tsc %llu MHz, %llu ms per row, kernel scale(64) in guest memory, RING_HEAD read per submission\n",
           (unsigned long long)(hz / 1000000), (unsigned long long)ms);
    static const unsigned sizes[] = { 1, 4, 16, 64, 256 };
    uint64_t budget = hz / 1000 * ms;
    int rc = 0;
    for (unsigned i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        unsigned b = sizes[i];
        measure(b, 1, hz / 100);    /* warm up */
        struct measurement sync = measure(b, 1, budget), qd = measure(b, QD, budget);
        if (sync.status || qd.status) {
            printf("fullvgpubench: batch %u: %s\n", b, fvgpu_error_name(sync.status ? sync.status : qd.status));
            if (gpu.fault.reason)
                fvgpu_print_fault("fullvgpubench", &gpu);
            rc = 1;
            break;
        }
        bench_print_batch_row("fullvgpubench", b, sync.cycles, sync.submissions, QD, qd.cycles, qd.submissions, hz);
    }
    printf("fullvgpubench: %llu RING_HEAD reads\n", (unsigned long long)gpu.head_reads);
    printf("fullvgpubench: done\n");
    return rc;
}
