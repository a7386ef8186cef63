/*
 * test=blkbench: virtio-blk throughput. Sequential and random (fixed-seed
 * PRNG) reads and writes of 4 KiB and 64 KiB at queue depth 1 and 32, each
 * row for `bench_ms` milliseconds (default 700) or 1 GiB, whichever comes
 * first, over the first GiB of the disk (or all of it if smaller).
 * Completions are polled (`blk_msix=1` takes them by MSI-X instead).
 * Timed with the TSC, calibrated against the PIT; nothing is printed inside
 * a timed row. `notifies` counts doorbell writes, i.e. exits for the
 * notifications (EVENT_IDX lets the device suppress some).
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/virtio_blk.h"
#include "malv/x86.h"

#define MSIX_VECTOR 0x50
#define MAX_BYTES_PER_ROW (1ull << 30)
#define SPAN_MAX (1ull << 30)
#define BUF_BYTES 65536u

static struct blk_dev dev;
static uint8_t *bufs[BLK_MAX_INFLIGHT];

struct row_result {
    uint64_t requests, bytes, cycles, notifies;
    const char *error;
};

static uint64_t xorshift(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x * 0x2545f4914f6cdd1dull;
}

static struct row_result run_row(bool random, bool write, uint32_t size, unsigned qd,
                                 uint64_t budget_cycles, uint64_t seed)
{
    struct row_result res = { 0 };
    uint64_t span = dev.capacity * BLK_SECTOR;
    if (span > SPAN_MAX)
        span = SPAN_MAX;
    uint64_t blocks = span / size, pos = 0, rng = seed;
    /* Buffers not in flight, as a stack of indices. */
    unsigned free_bufs[BLK_MAX_INFLIGHT], nfree = 0;
    for (unsigned i = 0; i < qd; i++)
        free_bufs[nfree++] = i;

    uint64_t notifies0 = dev.vq.notifies;
    uint64_t t0 = rdtsc();
    bool stop = false;
    for (;;) {
        bool added = false;
        while (!stop && nfree > 0) {
            uint64_t block = random ? xorshift(&rng) % blocks : pos++ % blocks;
            unsigned b = free_bufs[nfree - 1];
            struct blk_io io = {
                .type = write ? VIRTIO_BLK_T_OUT : VIRTIO_BLK_T_IN,
                .sector = block * (size / BLK_SECTOR), .buf = bufs[b], .bytes = size,
                .seg_bytes = 0, .indirect = false, .tag = b,
            };
            int slot = blk_submit(&dev, &io);
            if (slot == -1)
                break;
            if (slot < 0) {
                res.error = blk_error(&dev) ? blk_error(&dev) : "request refused by the driver";
                return res;
            }
            nfree--;
            added = true;
        }
        if (added)
            blk_kick(&dev);
        if (dev.inflight == 0)
            break;
        struct blk_done d[BLK_MAX_INFLIGHT];
        int n = blk_complete(&dev, d, BLK_MAX_INFLIGHT, true);
        if (n < 0) {
            res.error = blk_error(&dev);
            return res;
        }
        for (int i = 0; i < n; i++) {
            if (d[i].status != VIRTIO_BLK_S_OK) {
                res.error = "request failed";
                return res;
            }
            free_bufs[nfree++] = (unsigned)d[i].tag;
            res.requests++;
            res.bytes += size;
        }
        if (rdtsc() - t0 >= budget_cycles || res.bytes >= MAX_BYTES_PER_ROW)
            stop = true;
    }
    res.cycles = rdtsc() - t0;
    res.notifies = dev.vq.notifies - notifies0;
    return res;
}

int test_blkbench(void)
{
    uint64_t tsc_hz = tsc_calibrate();
    if (!tsc_hz) {
        printf("blkbench: FAIL no PIT interrupts to calibrate the TSC\n");
        return 1;
    }
    char arg[24];
    uint64_t ms = 700;
    if (cmdline_get("bench_ms", arg, sizeof arg) && (!parse_u64(arg, &ms, NULL) || ms == 0 || ms > 60000))
        ms = 700;
    bool msix = cmdline_get("blk_msix", arg, sizeof arg) && strcmp(arg, "1") == 0;
    /* rows=NAME runs one row (e.g. seq-read-4k-qd1), rows=none none: a host counting exits
     * per row runs each alone and subtracts the boot's share, measured with rows=none. */
    char only[24] = "";
    cmdline_get("rows", only, sizeof only);
    /* hold=1 keeps the guest alive after "done" so the host can read its counters first. */
    bool hold = cmdline_get("hold", arg, sizeof arg) && strcmp(arg, "1") == 0;

    const char *err = pci_init();
    if (!err)
        err = blk_open(&dev, 0, BLK_FEATURES_OPTIONAL, msix, MSIX_VECTOR);
    if (err) {
        printf("blkbench: FAIL %s\n", err);
        return 1;
    }
    if (dev.capacity * BLK_SECTOR < 64 * BUF_BYTES) {
        printf("blkbench: FAIL disk too small (%llu sectors, need 4 MiB)\n",
               (unsigned long long)dev.capacity);
        return 1;
    }
    for (unsigned i = 0; i < BLK_MAX_INFLIGHT; i++) {
        bufs[i] = dma_alloc(BUF_BYTES, 4096);
        if (!bufs[i]) {
            printf("blkbench: FAIL out of DMA memory\n");
            return 1;
        }
        /* The same bytes in every buffer: whatever order writes land in, the data is alike. */
        for (unsigned j = 0; j < BUF_BYTES; j++)
            bufs[i][j] = (uint8_t)(j * 7 + (j >> 9));
    }
    printf("blkbench: TSC %llu MHz; capacity %llu MiB; %llu ms per row; completions by %s; "
           "event_idx %s\n",
           (unsigned long long)(tsc_hz / 1000000), (unsigned long long)(dev.capacity >> 11),
           (unsigned long long)ms, msix ? "MSI-X" : "polling", dev.vq.event_idx ? "on" : "off");

    static const uint32_t sizes[2] = { 4096, 65536 };
    static const unsigned depths[2] = { 1, BLK_MAX_INFLIGHT };
    unsigned row = 0;
    for (unsigned random = 0; random < 2; random++)
        for (unsigned write = 0; write < 2; write++)
            for (unsigned s = 0; s < 2; s++)
                for (unsigned q = 0; q < 2; q++, row++) {
                    char name[24];
                    snprintf(name, sizeof name, "%s-%s-%s-qd%u", random ? "rand" : "seq", write ? "write" : "read",
                             sizes[s] == 4096 ? "4k" : "64k", depths[q]);
                    if (only[0] && strcmp(only, name) != 0)
                        continue;
                    printf("blkbench: %s-%s %s qd%u: ", random ? "rand" : "seq", write ? "write" : "read",
                           sizes[s] == 4096 ? "4k" : "64k", depths[q]);
                    if (write && dev.read_only) {
                        printf("skipped (read-only disk)\n");
                        continue;
                    }
                    console_flush();    /* keep serial output out of the timed region */
                    struct row_result r = run_row(random, write, sizes[s], depths[q],
                                                  tsc_hz / 1000 * ms, 0x6d616c76ull + row);
                    if (r.error) {
                        printf("FAIL %s\n", r.error);
                        return 1;
                    }
                    double secs = (double)r.cycles / (double)tsc_hz;
                    printf("%.1f MB/s %.0f IOPS %llu requests notifies=%llu\n", r.bytes / secs / 1e6,
                           r.requests / secs, (unsigned long long)r.requests,
                           (unsigned long long)r.notifies);
                }
    if (msix)
        printf("blkbench: %llu interrupts\n", (unsigned long long)blk_interrupts(&dev));
    printf("blkbench: done\n");
    if (hold) {
        console_flush();
        for (;;)
            __asm__ volatile("pause");
    }
    return 0;
}
