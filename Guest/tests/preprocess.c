/*
 * test=preprocess: the MLaaS `preprocess` service end to end (docs/mlaas.md,
 * "preprocess"). The guest names its MNIST disk (Guest/build/mnist.img, the
 * first virtio-blk disk), a pipeline (resize 56x56, random crop 48x48 inside
 * 4 pixels of padding, horizontal flip, normalisation, a shuffle seed, batches
 * of 64) and two HOST3D blobs of its context; the host reads the records from
 * the disk and augments them on the GPU, a batch ahead. The guest asks for a
 * few batches with NEXT (MLAAS_REQUEST), and only to check them reads each
 * batch back and compares it with its own CPU reference (lib/preprocess_ref.c)
 * over the same records, read by the guest itself through virtio-blk.
 *
 * The rule: on the CPU backend (capset backend 0) every value must be
 * bit-identical and every label equal; on a Vulkan device, whose compiler may
 * fuse a multiply-add in the bilinear resize, each value within 1e-5 of the
 * reference (as GPUHostTests holds the resize kernel), labels equal.
 *
 * Then the refusals, each one line `preprocess: bad: <what>: <status>
 * (<reason>): <message>`: a range outside the disk, a disk that is not the
 * VM's, a malformed pipeline, images of another context, images too small, a
 * GUEST blob as destination, a bad request op, NEXT after DISABLE.
 *
 * Then pp_steps (8) NEXTs, each after a pretend training step of pp_step_ms
 * (20) ms: `preprocess: pipelined: ...` (double buffering at work: the batch
 * was written during the step).
 *
 * Options: pp_records (default 256: 4 batches an epoch, so 6 batches cross
 * into the next epoch's shuffle), pp_batches (6), pp_seed (42);
 * pp_wait_unload=1 prints `preprocess: waiting for unload` after the batches,
 * waits (60 s at most) until the host unloaded the service, and then asks
 * NEXT once more (the answer: not loaded).
 * Exits 0 when the batches matched, 1 otherwise.
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
#include "malv/vgpu.h"
#include "malv/virtio_blk.h"
#include "malv/x86.h"

#define SERVICE "preprocess"
#define BATCH 64


static struct vgpu gpu;
static struct blk_dev disk;
static uint8_t *dataset;        /* the whole disk image, read by the guest for its reference */
static struct mnist_header head;

static const char *read_disk(void)
{
    const char *err = pci_init();
    if (!err)
        err = blk_open(&disk, 0, BLK_FEATURES_OPTIONAL, false, 0);
    if (err)
        return err;
    if (disk.blk_size != BLK_SECTOR)
        return "block size is not 512";
    uint64_t bytes = disk.capacity * BLK_SECTOR;
    if (bytes > (64ull << 20))
        return "disk larger than 64 MiB";
    dataset = dma_alloc(bytes, 4096);
    if (!dataset)
        return "out of memory for the disk image";
    const uint32_t chunk = 64u << 10;
    for (uint64_t at = 0; at < bytes; at += chunk) {
        uint32_t len = bytes - at < chunk ? (uint32_t)(bytes - at) : chunk;
        struct blk_io io = { .type = VIRTIO_BLK_T_IN, .sector = at / BLK_SECTOR, .buf = dataset + at, .bytes = len };
        if (blk_sync(&disk, &io, NULL) != VIRTIO_BLK_S_OK)
            return "read failed";
    }
    memcpy(&head, dataset, sizeof head);
    if (memcmp(head.magic, MNIST_MAGIC, 8) != 0 || head.version != 1)
        return "no mnist.img (magic/version); run scripts/make-dataset";
    if (head.height != 28 || head.width != 28 || head.channels != 1 || head.record_bytes != 28 * 28 + 1)
        return "records are not 28x28x1 + label";
    if (head.data_end > bytes || head.train_records + (uint64_t)head.train_count * head.record_bytes > head.data_end)
        return "the train records run past the disk";
    return NULL;
}

static bool transport_broken;

static void report(const char *step, uint32_t st, const struct vgpu_mlaas_error *err)
{
    if (st == VIRTIO_GPU_STATUS_OK)
        printf("preprocess: %s: OK\n", step);
    else if (err->status)
        printf("preprocess: %s: %s (%s): %s\n", step, vgpu_status_name(st), vgpu_mlaas_status_name(err->status),
               err->message);
    else
        printf("preprocess: %s: %s\n", step, vgpu_status_name(st));
    if (st == VIRTIO_GPU_STATUS_TRANSPORT)
        transport_broken = true;
}

static uint32_t enable(const char *step, const char *params)
{
    struct vgpu_mlaas_error err;
    uint32_t st = vgpu_mlaas_enable(&gpu, SERVICE, params, (uint32_t)strlen(params), &err);
    report(step, st, &err);
    return st;
}

struct next_answer {
    uint32_t slot, count, epoch, index;
    uint64_t sequence;
    uint64_t waited_ns;     /* how long the service waited for the batch (0: it was ready) */
};

static uint32_t next(struct next_answer *a, struct vgpu_mlaas_error *err, uint32_t op)
{
    uint32_t request[2] = { op, 0 };
    uint32_t len = 0;
    uint32_t st = vgpu_mlaas_request(&gpu, SERVICE, request, sizeof request, a, sizeof *a, &len, err);
    if (st == VIRTIO_GPU_STATUS_OK && len != sizeof *a) {
        printf("preprocess: NEXT answered %u bytes, not %u\n", len, (unsigned)sizeof *a);
        return VIRTIO_GPU_STATUS_TOO_BIG;
    }
    return st;
}

static bool loaded_quietly(void)
{
    struct vgpu_mlaas_service services[VIRTIO_GPU_MLAAS_MAX_LIST];
    uint32_t count = 0, total = 0;
    if (vgpu_mlaas_list(&gpu, services, VIRTIO_GPU_MLAAS_MAX_LIST, &count, &total, NULL) != VIRTIO_GPU_STATUS_OK)
        return false;
    for (uint32_t i = 0; i < count; i++)
        if (strcmp(services[i].name, SERVICE) == 0)
            return services[i].loaded;
    return false;
}

static uint32_t option(const char *key, uint32_t fallback)
{
    char text[24] = "";
    uint64_t v;
    if (cmdline_get(key, text, sizeof text) && parse_u64(text, &v, NULL) && v > 0 && v < (1u << 31))
        return (uint32_t)v;
    return fallback;
}

static float absf(float x) { return x < 0 ? -x : x; }

int test_preprocess(void)
{
    const char *why = read_disk();
    if (why) {
        printf("preprocess: FAIL: disk: %s\n", why);
        return 1;
    }
    why = vgpu_open(&gpu, 0);
    if (why) {
        printf("preprocess: FAIL: %s\n", why);
        return 1;
    }
    if (!vgpu_mlaas_available(&gpu)) {
        printf("preprocess: FAIL: this vGPU carries no MLaaS requests\n");
        return 1;
    }
    const bool exact = vgpu_capset(&gpu)->backend == 0;
    uint32_t records = option("pp_records", 256), batches = option("pp_batches", 6), seed = option("pp_seed", 42);
    if (records > head.train_count)
        records = head.train_count;
    if (records < BATCH)
        records = BATCH;
    printf("preprocess: dataset: %u train records of %ux%ux%u + label at byte %llu; using %u, seed %u, %s check\n",
           head.train_count, head.height, head.width, head.channels, (unsigned long long)head.train_records, records,
           seed, exact ? "bit-exact (CPU backend)" : "within 1e-5 (Vulkan)");

    struct pp_pipeline p = {
        .records = records, .height = 28, .width = 28, .channels = 1, .resize_h = 56, .resize_w = 56,
        .crop_h = 48, .crop_w = 48, .padding = 4, .flip = true, .mean = { 0.1307f }, .std = { 0.3081f },
        .seed = seed, .batch = BATCH,
    };
    const uint32_t values = pp_out_values(&p);
    const uint64_t image_slot = (uint64_t)BATCH * values * 4, label_slot = BATCH * 4;

    struct vgpu_ctx ctx, other;
    struct vgpu_buf images, labels, foreign, small, guest_blob, labels2;
    uint32_t st = vgpu_ctx_create(&gpu, &ctx, "preprocess", -1);
    if (st == VIRTIO_GPU_STATUS_OK)
        st = vgpu_ctx_create(&gpu, &other, "other", -1);
    if (st == VIRTIO_GPU_STATUS_OK)
        st = vgpu_buf_create(&ctx, &images, 2 * image_slot, VGPU_MEM_HOST);
    if (st == VIRTIO_GPU_STATUS_OK)
        st = vgpu_buf_create(&ctx, &labels, 2 * label_slot, VGPU_MEM_HOST);
    if (st == VIRTIO_GPU_STATUS_OK)
        st = vgpu_buf_create(&other, &foreign, 2 * image_slot, VGPU_MEM_HOST);
    if (st == VIRTIO_GPU_STATUS_OK)
        st = vgpu_buf_create(&ctx, &small, image_slot, VGPU_MEM_HOST);
    if (st == VIRTIO_GPU_STATUS_OK)
        st = vgpu_buf_create(&ctx, &guest_blob, 2 * image_slot, VGPU_MEM_GUEST);
    if (st == VIRTIO_GPU_STATUS_OK)
        st = vgpu_buf_create(&ctx, &labels2, 2 * label_slot, VGPU_MEM_HOST);
    if (st != VIRTIO_GPU_STATUS_OK) {
        vgpu_print_failure("preprocess", "contexts and blobs", &gpu, st);
        return 1;
    }

    static char params[512];
    snprintf(params, sizeof params,
             "disk=0,offset=%llu,records=%u,image=28x28x1,resize=56x56,crop=48x48,padding=4,flip=on,"
             "mean=0.1307,std=0.3081,seed=%u,batch=%u,context=%u,images=%u,labels=%u",
             (unsigned long long)head.train_records, records, seed, BATCH, ctx.id, images.id, labels.id);
    printf("preprocess: pipeline: %s\n", params);
    if (enable("enable", params) != VIRTIO_GPU_STATUS_OK)
        return 1;

    uint32_t *order = dma_alloc(records * sizeof(uint32_t), 64);
    float *scratch = dma_alloc(pp_scratch_values(&p) * sizeof(float), 64);
    float *expected = dma_alloc(values * sizeof(float), 64);
    if (!order || !scratch || !expected) {
        printf("preprocess: FAIL: out of memory\n");
        return 1;
    }
    uint64_t hz = tsc_calibrate();
    uint64_t next_ticks = 0, reference_ticks = 0, compared = 0, identical = 0;
    float worst = 0;
    bool ok = true;
    int64_t order_epoch = -1;
    const uint32_t per_epoch = records / BATCH;
    for (uint32_t n = 0; n < batches && ok; n++) {
        struct next_answer a;
        struct vgpu_mlaas_error err;
        uint64_t t0 = rdtsc();
        st = next(&a, &err, 1);
        next_ticks += rdtsc() - t0;
        if (st != VIRTIO_GPU_STATUS_OK) {
            report("next", st, &err);
            ok = false;
            break;
        }
        if (a.sequence != n || a.slot != n % 2 || a.count != BATCH || a.epoch != n / per_epoch || a.index != n % per_epoch) {
            printf("preprocess: batch %u: answer slot %u count %u epoch %u index %u sequence %llu is not what was due\n", n,
                   a.slot, a.count, a.epoch, a.index, (unsigned long long)a.sequence);
            ok = false;
            break;
        }
        /* Only to check: the batch back into the blobs' staging pages. */
        st = vgpu_buf_download(&images, a.slot * image_slot, image_slot);
        if (st == VIRTIO_GPU_STATUS_OK)
            st = vgpu_buf_download(&labels, a.slot * label_slot, label_slot);
        if (st != VIRTIO_GPU_STATUS_OK) {
            vgpu_print_failure("preprocess", "reading the batch back", &gpu, st);
            return 1;
        }
        const float *got = (const float *)((const uint8_t *)images.ptr + a.slot * image_slot);
        const uint32_t *got_labels = (const uint32_t *)((const uint8_t *)labels.ptr + a.slot * label_slot);
        if ((int64_t)a.epoch != order_epoch) {
            pp_permutation(&p, a.epoch, order);
            order_epoch = a.epoch;
        }
        uint32_t batch_identical = 0, label_mismatches = 0;
        float batch_worst = 0;
        for (uint32_t k = 0; k < BATCH; k++) {
            uint64_t position = (uint64_t)a.index * BATCH + k;
            const uint8_t *rec = dataset + head.train_records + (uint64_t)order[position] * head.record_bytes;
            t0 = rdtsc();
            pp_image(&p, rec, pp_draw(&p, a.epoch, position), scratch, expected);
            reference_ticks += rdtsc() - t0;
            if (got_labels[k] != rec[28 * 28])
                label_mismatches++;
            for (uint32_t i = 0; i < values; i++) {
                float g = got[(uint64_t)k * values + i];
                uint32_t gb, eb;
                memcpy(&gb, &g, 4);
                memcpy(&eb, &expected[i], 4);
                if (gb == eb) {
                    batch_identical++;
                } else {
                    float d = absf(g - expected[i]);
                    if (!(d <= batch_worst))
                        batch_worst = d;    /* NaN lands here too */
                }
            }
        }
        compared += (uint64_t)BATCH * values;
        identical += batch_identical;
        if (batch_worst > worst || batch_worst != batch_worst)
            worst = batch_worst;
        bool batch_ok = label_mismatches == 0 && (exact ? batch_identical == BATCH * values : batch_worst <= 1e-5f);
        printf("preprocess: batch %u: slot %u epoch %u index %u: %u of %u values bit-identical, max |diff| %.3e, "
               "%u label mismatches: %s\n",
               n, a.slot, a.epoch, a.index, batch_identical, BATCH * values, (double)batch_worst, label_mismatches,
               batch_ok ? "ok" : "MISMATCH");
        ok = ok && batch_ok;
    }
    if (!ok) {
        printf("preprocess: result: FAIL\n");
        return 1;
    }
    printf("preprocess: result: PASS: %u batches of %u, %llu of %llu values bit-identical to the CPU reference "
           "(max |diff| %.3e), labels identical; NEXT %llu us mean; the guest's CPU reference %llu us per batch\n",
           batches, BATCH, (unsigned long long)identical, (unsigned long long)compared, (double)worst,
           (unsigned long long)(next_ticks * 1000000 / hz / batches),
           (unsigned long long)(reference_ticks * 1000000 / hz / batches));

    /*
     * Pipelined, as training would be: a step of pp_step_ms (the guest only
     * waits) between NEXTs. With double buffering the next batch is written
     * during the step, so NEXT only collects it: compare with the mean above,
     * where the guest asked again at once.
     */
    uint32_t step_ms = option("pp_step_ms", 20), steps = option("pp_steps", 8);
    uint64_t pipelined = 0, worst_ticks = 0, waited_ns = 0, ready = 0;
    for (uint32_t i = 0; i < steps; i++) {
        uint64_t until = rdtsc() + hz / 1000 * step_ms;
        while (rdtsc() < until)
            __asm__ volatile("pause");
        struct next_answer a;
        struct vgpu_mlaas_error err;
        uint64_t t0 = rdtsc();
        st = next(&a, &err, 1);
        uint64_t ticks = rdtsc() - t0;
        if (st != VIRTIO_GPU_STATUS_OK || a.sequence != batches + i) {
            report("pipelined next", st, &err);
            printf("preprocess: result: FAIL\n");
            return 1;
        }
        pipelined += ticks;
        waited_ns += a.waited_ns;
        ready += a.waited_ns == 0;
        if (ticks > worst_ticks)
            worst_ticks = ticks;
    }
    /* The floor: a request the device answers at once (LIST), after the same steps. */
    uint64_t floor_ticks = 0;
    for (uint32_t i = 0; i < steps; i++) {
        uint64_t until = rdtsc() + hz / 1000 * step_ms;
        while (rdtsc() < until)
            __asm__ volatile("pause");
        struct vgpu_mlaas_service services[VIRTIO_GPU_MLAAS_MAX_LIST];
        uint32_t count = 0, total = 0;
        uint64_t t0 = rdtsc();
        vgpu_mlaas_list(&gpu, services, VIRTIO_GPU_MLAAS_MAX_LIST, &count, &total, NULL);
        floor_ticks += rdtsc() - t0;
    }
    printf("preprocess: pipelined: %u NEXTs after %u ms steps: %llu us mean, %llu us max; %llu found the batch "
           "written (the service waited %llu us mean); a LIST after the same steps: %llu us mean\n", steps, step_ms,
           (unsigned long long)(pipelined * 1000000 / hz / steps), (unsigned long long)(worst_ticks * 1000000 / hz),
           (unsigned long long)ready, (unsigned long long)(waited_ns / 1000 / steps),
           (unsigned long long)(floor_ticks * 1000000 / hz / steps));

    char wait[8] = "";
    cmdline_get("pp_wait_unload", wait, sizeof wait);
    if (strcmp(wait, "1") == 0) {
        printf("preprocess: waiting for unload\n");
        console_flush();
        uint64_t start = rdtsc();
        while (loaded_quietly() && rdtsc() - start < 60 * hz) {
            uint64_t pause_until = rdtsc() + hz / 100;
            while (rdtsc() < pause_until)
                __asm__ volatile("pause");
        }
        struct next_answer a;
        struct vgpu_mlaas_error err;
        report("next after unload", next(&a, &err, 1), &err);
        printf("preprocess: done\n");
        return transport_broken ? 1 : 0;
    }

    /* The refusals. Each leaves the service as it was or stopped; the last ones end it. */
    static char bad[512];
    snprintf(bad, sizeof bad, "disk=0,offset=%llu,records=%u,image=28x28x1,batch=64",
             (unsigned long long)head.train_records, head.train_count * 2);
    enable("bad: range outside the disk", bad);
    enable("bad: not its disk", "disk=1,records=100,image=28x28x1,batch=10");
    enable("bad: malformed pipeline", "disk=0,records=100,image=28x28x1,crop=64x64,padding=2,batch=10");
    snprintf(bad, sizeof bad, "disk=0,records=100,image=28x28x1,resize=56x56,crop=48x48,padding=4,batch=64,"
             "context=%u,images=%u,labels=%u", ctx.id, foreign.id, labels.id);
    enable("bad: images of another context", bad);
    snprintf(bad, sizeof bad, "disk=0,records=100,image=28x28x1,resize=56x56,crop=48x48,padding=4,batch=64,"
             "context=%u,images=%u,labels=%u", ctx.id, small.id, labels.id);
    enable("bad: images too small", bad);
    snprintf(bad, sizeof bad, "disk=0,records=100,image=28x28x1,resize=56x56,crop=48x48,padding=4,batch=64,"
             "context=%u,images=%u,labels=%u", ctx.id, guest_blob.id, labels.id);
    enable("bad: GUEST blob as destination", bad);
    snprintf(bad, sizeof bad, "disk=0,records=100,image=28x28x1,batch=64,context=%u,images=%u,labels=%u",
             ctx.id + 100, images.id, labels.id);
    enable("bad: no such context", bad);
    struct next_answer a;
    struct vgpu_mlaas_error err;
    report("bad: request op 7", next(&a, &err, 7), &err);
    report("bad: next without a running pipeline", next(&a, &err, 1), &err);
    report("disable", vgpu_mlaas_disable(&gpu, SERVICE, &err), &err);
    report("bad: next after disable", next(&a, &err, 1), &err);

    /*
     * Mid-use: a destination unreferenced, then the context destroyed, while
     * the pipeline runs. The batches already written may still be handed out;
     * the first one that cannot be written stops the pipeline, and the NEXT
     * that was due says why.
     */
    if (enable("enable again", params) == VIRTIO_GPU_STATUS_OK) {
        report("next", next(&a, &err, 1), &err);
        report("unref labels", vgpu_buf_destroy(&labels), &err);
        for (int i = 0; i < 3 && (st = next(&a, &err, 1)) == VIRTIO_GPU_STATUS_OK; i++)
            ;
        report("bad: labels unreferenced mid-use", st, &err);
    }
    snprintf(params, sizeof params,
             "disk=0,offset=%llu,records=%u,image=28x28x1,resize=56x56,crop=48x48,padding=4,flip=on,"
             "mean=0.1307,std=0.3081,seed=%u,batch=%u,context=%u,images=%u,labels=%u",
             (unsigned long long)head.train_records, records, seed, BATCH, ctx.id, images.id, labels2.id);
    if (enable("enable with new labels", params) == VIRTIO_GPU_STATUS_OK) {
        report("next", next(&a, &err, 1), &err);
        report("destroy the context", vgpu_ctx_destroy(&ctx), &err);
        for (int i = 0; i < 3 && (st = next(&a, &err, 1)) == VIRTIO_GPU_STATUS_OK; i++)
            ;
        report("bad: context destroyed mid-use", st, &err);
    }
    printf("preprocess: done\n");
    return transport_broken ? 1 : 0;
}
