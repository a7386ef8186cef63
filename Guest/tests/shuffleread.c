/*
 * test=shuffleread: the guest-preprocessing form of the MNIST job's data loading, as the MLaaS
 * `prefetch` service sees it (docs/mlaas.md, "prefetch"). Epoch after epoch the guest reads the
 * train records of its first disk (Guest/build/mnist.img) one virtio-blk request per record, in
 * a shuffled order, and preprocesses each on its vCPU with the CPU reference of the preprocess
 * pipeline (resize 56x56, crop 48x48 inside 4 pixels of padding, flip, normalise): a training
 * loop whose data loader runs in the guest.
 *
 * The order is the same every epoch: the preprocess pipeline's Fisher-Yates permutation of
 * epoch 0 for seed sr_seed. A loader with a fixed seed that shuffles once (or a host reading
 * through the same dataset again and again) reads this way, and it is what a Markov chain over
 * the reads can learn in one epoch; sequential read-ahead cannot predict it.
 *
 * Each epoch prints `shuffleread: epoch E: N records in U us (R us/record, checksum C)`, timed
 * with the TSC; the checksum (of labels and pixels read) must be the same every epoch, which
 * checks that reads served from the host's read-ahead cache carry the disk's bytes.
 * Options: sr_records (default: every train record), sr_epochs (3), sr_seed (42),
 * sr_work=0 (no preprocessing: reads alone). Exits 0 when every epoch read the same bytes.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/memory.h"
#include "malv/mnist.h"
#include "malv/pci.h"
#include "malv/preprocess.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/virtio_blk.h"
#include "malv/x86.h"

#define MAX_EPOCHS 16u


static struct blk_dev disk;

static uint64_t option(const char *name, uint64_t fallback, uint64_t max)
{
    char arg[24];
    uint64_t value;
    if (cmdline_get(name, arg, sizeof arg) && parse_u64(arg, &value, NULL) && value <= max)
        return value;
    return fallback;
}

int test_shuffleread(void)
{
    uint64_t tsc_hz = tsc_calibrate();
    if (!tsc_hz) {
        printf("shuffleread: FAIL no PIT interrupts to calibrate the TSC\n");
        return 1;
    }
    const char *err = pci_init();
    if (!err)
        err = blk_open(&disk, 0, BLK_FEATURES_OPTIONAL, false, 0);
    if (err) {
        printf("shuffleread: FAIL %s\n", err);
        return 1;
    }
    uint8_t *sector = dma_alloc(4096, 4096);
    struct mnist_header head;
    struct blk_io first = { .type = VIRTIO_BLK_T_IN, .sector = 0, .buf = sector, .bytes = BLK_SECTOR };
    if (!sector || blk_sync(&disk, &first, NULL) != VIRTIO_BLK_S_OK) {
        printf("shuffleread: FAIL cannot read the header\n");
        return 1;
    }
    memcpy(&head, sector, sizeof head);
    if (memcmp(head.magic, MNIST_MAGIC, 8) != 0 || head.version != 1 || head.height != 28 || head.width != 28 ||
        head.channels != 1 || head.record_bytes != 28 * 28 + 1) {
        printf("shuffleread: FAIL no mnist.img on disk 0 (run scripts/make-dataset)\n");
        return 1;
    }
    uint32_t records = (uint32_t)option("sr_records", head.train_count, head.train_count);
    uint32_t epochs = (uint32_t)option("sr_epochs", 3, MAX_EPOCHS);
    uint64_t seed = option("sr_seed", 42, ~0ull);
    bool work = option("sr_work", 1, 1) == 1;
    if (records == 0 || epochs == 0) {
        printf("shuffleread: FAIL sr_records and sr_epochs must be positive\n");
        return 1;
    }

    struct pp_pipeline p = {
        .records = records, .height = 28, .width = 28, .channels = 1, .resize_h = 56, .resize_w = 56,
        .crop_h = 48, .crop_w = 48, .padding = 4, .flip = true, .mean = { 0.1307f }, .std = { 0.3081f },
        .seed = seed, .batch = 1,
    };
    uint32_t *order = dma_alloc(records * sizeof(uint32_t), 64);
    float *scratch = dma_alloc(pp_scratch_values(&p) * sizeof(float), 64);
    float *out = dma_alloc(pp_out_values(&p) * sizeof(float), 64);
    /* A record spans at most three sectors (785 bytes from any sector offset). */
    uint8_t *buf = dma_alloc(3 * BLK_SECTOR, 4096);
    if (!order || !scratch || !out || !buf) {
        printf("shuffleread: FAIL out of memory\n");
        return 1;
    }
    pp_permutation(&p, 0, order);
    printf("shuffleread: %u records of %u bytes from byte %llu, %u epochs in one fixed shuffle (seed %llu)%s\n",
           records, head.record_bytes, (unsigned long long)head.train_records, epochs, (unsigned long long)seed,
           work ? ", each preprocessed on the vCPU" : "");

    uint64_t checksums[MAX_EPOCHS];
    int failed = 0;
    for (uint32_t e = 0; e < epochs; e++) {
        uint64_t sum = 0;
        uint64_t t0 = rdtsc();
        for (uint32_t i = 0; i < records; i++) {
            uint64_t at = head.train_records + (uint64_t)order[i] * head.record_bytes;
            uint64_t first_sector = at / BLK_SECTOR;
            uint64_t end_sector = (at + head.record_bytes + BLK_SECTOR - 1) / BLK_SECTOR;
            struct blk_io io = { .type = VIRTIO_BLK_T_IN, .sector = first_sector, .buf = buf,
                                 .bytes = (uint32_t)((end_sector - first_sector) * BLK_SECTOR) };
            if (blk_sync(&disk, &io, NULL) != VIRTIO_BLK_S_OK) {
                printf("shuffleread: FAIL read of record %u failed\n", order[i]);
                return 1;
            }
            const uint8_t *rec = buf + (at - first_sector * BLK_SECTOR);
            for (uint32_t b = 0; b < head.record_bytes; b++)
                sum = sum * 31 + rec[b];
            if (work)
                pp_image(&p, rec, pp_draw(&p, e, i), scratch, out);
        }
        uint64_t us = (rdtsc() - t0) * 1000000ull / tsc_hz;
        checksums[e] = sum;
        printf("shuffleread: epoch %u: %u records in %llu us (%llu us/record, checksum %016llx)\n", e + 1, records,
               (unsigned long long)us, (unsigned long long)(us / records), (unsigned long long)sum);
        if (checksums[e] != checksums[0]) {
            printf("shuffleread: FAIL epoch %u read other bytes than epoch 1\n", e + 1);
            failed = 1;
        }
    }
    printf("shuffleread: %s\n", failed ? "FAIL" : "PASS");
    return failed;
}
