/*
 * test=train: a real training job on the para-vGPU. Reads scikit-learn's
 * digits (scripts/make-dataset -> Guest/build/digits.img, format in
 * Guest/README.md) from the first virtio-blk disk, then trains an MLP
 * 64 -> 128 (ReLU) -> 10 with softmax cross-entropy by mini-batch SGD with
 * momentum, every kernel on the vGPU:
 *
 *   preprocess  normalize_u8 (u8 0..16 -> f32 0..1) of the shuffled train set
 *   forward     sgemm, bias_add, relu, sgemm, bias_add
 *   loss        softmax_xent (per-row loss and d logits, scaled by 1/batch)
 *   backward    sgemm (A^T), reduce_sum_cols, sgemm (B^T), relu_backward,
 *               sgemm (A^T), reduce_sum_cols
 *   update      scale + axpy + axpy over one flat parameter vector
 *               (v = mu v + g; p -= lr v)
 *   evaluate    forward on the whole train and test sets
 *
 * One epoch (the preprocessing, every step and the evaluation) is one
 * SUBMIT_3D. Parameters, their gradients and velocities and all activations
 * live in HOST3D blobs (GPU memory only); the guest only writes the shuffled
 * pixels and labels (GUEST blobs) and reads per-row losses and the
 * evaluation logits (GUEST blobs), taking the argmax on the CPU.
 * The shuffle and the weight initialisation (uniform +-sqrt(6/(in+out)),
 * biases 0) come from a fixed-seed splitmix64, so a run is deterministic up
 * to the backend's float rounding.
 *
 * Output, one line per epoch, then a summary:
 *   train: epoch N loss X train-acc Y% test-acc Z% time T ms
 *   train: final test accuracy Z%
 *   train: PASS            (exit 0 if test accuracy >= 95 %, else FAIL, exit 1)
 * Command line: epochs=N (default 20), batch=N (default 32), gpu=full (the
 * same job on the full-vGPU, docs/fullvgpu.md: every buffer is guest memory
 * mapped in its GPU page tables, one epoch is one `execute`).
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/crc32.h"
#include "malv/format.h"
#include "malv/fullvgpu.h"
#include "malv/intr.h"
#include "malv/memory.h"
#include "malv/pci.h"
#include "malv/splitmix.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/vgpu.h"
#include "malv/virtio_blk.h"
#include "malv/x86.h"

/* Guest/build/digits.img header (little-endian, the first 512-byte sector). */
#define DIGITS_MAGIC "MALVDIGT"
struct digits_header {
    char magic[8];
    uint32_t version;               /* 1 */
    uint32_t header_bytes;          /* 512: data starts after the header sector */
    uint32_t train_count, test_count;
    uint32_t height, width, channels;
    uint32_t classes;
    uint32_t max_value;             /* pixels are 0 .. max_value */
    uint32_t seed;                  /* of the shuffle */
    uint32_t reserved[2];
    uint64_t train_pixels, train_labels, test_pixels, test_labels;     /* byte offsets in the image */
    uint64_t data_end;              /* end of the last section */
    uint32_t data_crc32;            /* CRC-32 of bytes [header_bytes, data_end) */
} __attribute__((packed));

_Static_assert(sizeof(struct digits_header) == 100, "digits header layout");

#define IN 64u
#define HID 128u
#define OUT 10u
#define MAX_TRAIN 4096u
#define MAX_TEST 4096u
#define MAX_BATCH 256u
#define PASS_PERCENT 95.0
#define VGPU_MSIX_VECTOR 0x60    /* control queue; config changes on 0x61 */

/* Offsets in the flat parameter vector (floats). */
#define P_W1 0u                         /* IN x HID, row-major (x . W1) */
#define P_B1 (P_W1 + IN * HID)
#define P_W2 (P_B1 + HID)               /* HID x OUT */
#define P_B2 (P_W2 + HID * OUT)
#define P_COUNT (P_B2 + OUT)

static const float LEARNING_RATE = 0.05f, MOMENTUM = 0.9f;

static struct blk_dev disk;
static struct vgpu gpu;
static struct vgpu_ctx ctx;
/* gpu=full: the full-vGPU instead of the para-vGPU; the recording code is the same. */
static bool full;
static struct fvgpu fgpu;
static struct vgpu_stream stream;
/* GUEST blobs: written or read by the guest. */
static struct vgpu_buf pix_train, lab_train, pix_test, loss, logits_train, logits_test;
/* HOST blobs: GPU memory only. */
static struct vgpu_buf params, grads, velocity, x_train, x_test, z1, a1, logits, dlogits, da1, dz1, h_train, h_test;

static const uint8_t *src_pixels, *src_labels, *test_pixels, *test_labels;
static uint32_t n_train, n_test;
static uint32_t perm[MAX_TRAIN];
static uint64_t rng_state = 0x6d616c76766d2121ull;

static uint64_t next_u64(void) { return splitmix64_next(&rng_state); }
static float uniform(float bound) { return splitmix64_uniform(&rng_state, bound); }

/* ---- the dataset ---- */

static const char *read_dataset(void)
{
    static char why[160];
    const char *err = pci_init();
    if (!err)
        err = blk_open(&disk, 0, BLK_FEATURES_OPTIONAL, false, 0);
    if (err) {
        snprintf(why, sizeof why, "disk: %s", err);
        return why;
    }
    if (disk.blk_size != BLK_SECTOR)
        return "disk: block size is not 512";
    uint8_t *sector = dma_alloc(BLK_SECTOR, 4096);
    if (!sector)
        return "out of memory";
    struct blk_io io = { .type = VIRTIO_BLK_T_IN, .sector = 0, .buf = sector, .bytes = BLK_SECTOR };
    int s = blk_sync(&disk, &io, NULL);
    if (s != VIRTIO_BLK_S_OK) {
        snprintf(why, sizeof why, "disk: reading the header: %s", s < 0 ? blk_error(&disk) : "IOERR");
        return why;
    }
    struct digits_header h;
    memcpy(&h, sector, sizeof h);
    if (memcmp(h.magic, DIGITS_MAGIC, 8) != 0)
        return "disk: no digits image (magic); run scripts/make-dataset";
    if (h.version != 1 || h.header_bytes != BLK_SECTOR)
        return "disk: unsupported digits image version";
    if (h.height * h.width * h.channels != IN || h.classes != OUT)
        return "disk: images are not 8x8x1 in 10 classes";
    if (h.train_count == 0 || h.train_count > MAX_TRAIN || h.test_count == 0 || h.test_count > MAX_TEST)
        return "disk: bad image counts";
    uint64_t secs[4][2] = { { h.train_pixels, (uint64_t)h.train_count * IN },
                            { h.train_labels, h.train_count },
                            { h.test_pixels, (uint64_t)h.test_count * IN },
                            { h.test_labels, h.test_count } };
    if (h.data_end > disk.capacity * BLK_SECTOR || h.data_end > (64ull << 20))
        return "disk: data runs past the end of the disk";
    for (unsigned i = 0; i < 4; i++)
        if (secs[i][0] < h.header_bytes || secs[i][0] + secs[i][1] > h.data_end)
            return "disk: a section lies outside the data";

    uint64_t bytes = (h.data_end + BLK_SECTOR - 1) & ~(uint64_t)(BLK_SECTOR - 1);
    uint8_t *image = dma_alloc(bytes, 4096);
    if (!image)
        return "out of memory for the image";
    const uint32_t chunk = 64u << 10;
    for (uint64_t at = 0; at < bytes; at += chunk) {
        uint32_t len = bytes - at < chunk ? (uint32_t)(bytes - at) : chunk;
        io = (struct blk_io){ .type = VIRTIO_BLK_T_IN, .sector = at / BLK_SECTOR, .buf = image + at, .bytes = len };
        s = blk_sync(&disk, &io, NULL);
        if (s != VIRTIO_BLK_S_OK) {
            snprintf(why, sizeof why, "disk: reading sector %llu: %s", (unsigned long long)(at / BLK_SECTOR),
                     s < 0 ? blk_error(&disk) : "IOERR");
            return why;
        }
    }
    uint32_t crc = crc32_update(0, image + h.header_bytes, h.data_end - h.header_bytes);
    if (crc != h.data_crc32) {
        snprintf(why, sizeof why, "disk: data CRC-32 0x%08x, header says 0x%08x", crc, h.data_crc32);
        return why;
    }
    src_pixels = image + h.train_pixels;
    src_labels = image + h.train_labels;
    test_pixels = image + h.test_pixels;
    test_labels = image + h.test_labels;
    n_train = h.train_count;
    n_test = h.test_count;
    for (uint32_t i = 0; i < n_train * IN; i++)
        if (src_pixels[i] > h.max_value)
            return "disk: a train pixel is above max_value";
    for (uint32_t i = 0; i < n_train; i++)
        if (src_labels[i] >= OUT)
            return "disk: a train label is out of range";
    for (uint32_t i = 0; i < n_test; i++)
        if (test_labels[i] >= OUT)
            return "disk: a test label is out of range";
    printf("train: digits image v%u: %u train, %u test, %ux%ux%u, 0..%u, %u classes, shuffle seed %u, "
           "crc32 0x%08x ok\n",
           h.version, n_train, n_test, h.height, h.width, h.channels, h.max_value, h.classes, h.seed, crc);
    return NULL;
}

/* ---- recording ---- */

/* Forward pass of `rows` rows from x (rows x IN) through hidden h into out (rows x OUT). */
static void record_forward(uint32_t rows, struct vgpu_ref x, struct vgpu_ref hpre, struct vgpu_ref hact,
                           struct vgpu_ref out)
{
    struct vgpu_stream *s = &stream;
    vgpu_sgemm(s, rows, HID, IN, 0, 1.0f, 0.0f, x, vgpu_f32(&params, P_W1, IN * HID), hpre);
    vgpu_bias_add(s, rows, HID, 1, hpre, vgpu_f32(&params, P_B1, HID));
    vgpu_relu(s, rows * HID, hpre, hact);
    vgpu_sgemm(s, rows, OUT, HID, 0, 1.0f, 0.0f, hact, vgpu_f32(&params, P_W2, HID * OUT), out);
    vgpu_bias_add(s, rows, OUT, 1, out, vgpu_f32(&params, P_B2, OUT));
}

/* One SGD step on train rows [first, first + rows) of the (shuffled) epoch. */
static void record_step(uint32_t first, uint32_t rows)
{
    struct vgpu_stream *s = &stream;
    struct vgpu_ref x = vgpu_f32(&x_train, (uint64_t)first * IN, rows * IN);
    struct vgpu_ref rz1 = vgpu_f32(&z1, 0, rows * HID), ra1 = vgpu_f32(&a1, 0, rows * HID);
    struct vgpu_ref rl = vgpu_f32(&logits, 0, rows * OUT), rdl = vgpu_f32(&dlogits, 0, rows * OUT);
    struct vgpu_ref rda1 = vgpu_f32(&da1, 0, rows * HID), rdz1 = vgpu_f32(&dz1, 0, rows * HID);

    record_forward(rows, x, rz1, ra1, rl);
    vgpu_softmax_xent(s, rows, OUT, 1.0f / (float)rows, rl, vgpu_f32(&lab_train, first, rows),
                      vgpu_f32(&loss, first, rows), rdl);
    /* dW2 = a1^T dl, db2 = sum_rows dl, da1 = dl W2^T */
    vgpu_sgemm(s, HID, OUT, rows, VGPU_TRANSPOSE_A, 1.0f, 0.0f, ra1, rdl, vgpu_f32(&grads, P_W2, HID * OUT));
    vgpu_reduce(s, VGPU_SUM, VGPU_PER_COLUMN, rows, OUT, rdl, vgpu_f32(&grads, P_B2, OUT));
    vgpu_sgemm(s, rows, HID, OUT, VGPU_TRANSPOSE_B, 1.0f, 0.0f, rdl, vgpu_f32(&params, P_W2, HID * OUT), rda1);
    /* dz1 = relu'(z1) da1; dW1 = x^T dz1, db1 = sum_rows dz1 */
    vgpu_activation_backward(s, VGPU_RELU, rows * HID, rz1, rda1, rdz1);
    vgpu_sgemm(s, IN, HID, rows, VGPU_TRANSPOSE_A, 1.0f, 0.0f, x, rdz1, vgpu_f32(&grads, P_W1, IN * HID));
    vgpu_reduce(s, VGPU_SUM, VGPU_PER_COLUMN, rows, HID, rdz1, vgpu_f32(&grads, P_B1, HID));
    /* v = mu v + g; p -= lr v */
    struct vgpu_ref p = vgpu_f32(&params, 0, P_COUNT), g = vgpu_f32(&grads, 0, P_COUNT),
                    v = vgpu_f32(&velocity, 0, P_COUNT);
    vgpu_scale(s, P_COUNT, MOMENTUM, v);
    vgpu_axpy(s, P_COUNT, 1.0f, g, v);
    vgpu_axpy(s, P_COUNT, -LEARNING_RATE, v, p);
}

static const float norm_mean[1] = { 0.0f }, norm_std[1] = { 16.0f };

/* Shuffles the train set into the GUEST blobs and records one epoch. */
static void record_epoch(uint32_t batch, bool first_epoch)
{
    for (uint32_t i = n_train - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(next_u64() % (i + 1));
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    uint8_t *px = pix_train.ptr;
    uint32_t *lb = (uint32_t *)lab_train.ptr;
    for (uint32_t i = 0; i < n_train; i++) {
        memcpy(px + (uint64_t)i * IN, src_pixels + (uint64_t)perm[i] * IN, IN);
        lb[i] = src_labels[perm[i]];
    }

    vgpu_stream_reset(&stream);
    /* u8 NHWC (N x 8 x 8 x 1) -> f32 NCHW, (v - 0) / 16 */
    vgpu_normalize_u8(&stream, n_train, 8, 8, 1, 1.0f, norm_mean, norm_std, vgpu_bytes(&pix_train, 0, n_train * IN),
                      vgpu_f32(&x_train, 0, n_train * IN));
    if (first_epoch)
        vgpu_normalize_u8(&stream, n_test, 8, 8, 1, 1.0f, norm_mean, norm_std,
                          vgpu_bytes(&pix_test, 0, n_test * IN), vgpu_f32(&x_test, 0, n_test * IN));
    for (uint32_t first = 0; first < n_train; first += batch)
        record_step(first, n_train - first < batch ? n_train - first : batch);
    record_forward(n_train, vgpu_f32(&x_train, 0, n_train * IN), vgpu_f32(&h_train, 0, n_train * HID),
                   vgpu_f32(&h_train, 0, n_train * HID), vgpu_f32(&logits_train, 0, n_train * OUT));
    record_forward(n_test, vgpu_f32(&x_test, 0, n_test * IN), vgpu_f32(&h_test, 0, n_test * HID),
                   vgpu_f32(&h_test, 0, n_test * HID), vgpu_f32(&logits_test, 0, n_test * OUT));
}

/* Correct argmax predictions; label i is labels[i] (u8) or labels32[i]. */
static uint32_t correct(const float *out, uint32_t rows, const uint8_t *labels, const uint32_t *labels32)
{
    uint32_t ok = 0;
    for (uint32_t r = 0; r < rows; r++) {
        const float *o = out + (uint64_t)r * OUT;
        uint32_t best = 0;
        for (uint32_t c = 1; c < OUT; c++)
            if (o[c] > o[best])
                best = c;
        ok += best == (labels ? labels[r] : labels32[r]);
    }
    return ok;
}

static int fail_status(const char *what, uint32_t st)
{
    if (full) {
        printf("train: %s: %s\n", what, fvgpu_error_name(st));
        if (st == FVGPU_ERR_FAULT)
            fvgpu_print_fault("train", &fgpu);
    } else {
        vgpu_print_failure("train", what, &gpu, st);
    }
    printf("train: FAIL\n");
    return 1;
}

/* ---- the two GPUs ---- */

static const char *gpu_open(bool poll)
{
    if (full)
        return fvgpu_open(&fgpu, 0, 64);
    return poll ? vgpu_open(&gpu, 0) : vgpu_open_msix(&gpu, 0, VGPU_MSIX_VECTOR);
}

static bool gpu_supports(unsigned opcode)
{
    return full ? (fvgpu_reg(&fgpu, FVGPU_OPCODE_MASK) >> opcode & 1) : vgpu_supports(&gpu, opcode);
}

static uint32_t gpu_buf_create(struct vgpu_buf *b, uint64_t bytes, enum vgpu_mem mem)
{
    return full ? fvgpu_buf_create(&fgpu, b, bytes) : vgpu_buf_create(&ctx, b, bytes, mem);
}

static uint32_t gpu_run(void)
{
    return full ? fvgpu_run(&fgpu, &stream) : vgpu_run(&ctx, &stream);
}

int test_train(void)
{
    char arg[24] = "";
    uint64_t epochs = 20, batch = 32;
    if (cmdline_get("epochs", arg, sizeof arg) && (!parse_u64(arg, &epochs, NULL) || epochs == 0 || epochs > 1000)) {
        printf("train: bad epochs '%s'\n", arg);
        return 2;
    }
    if (cmdline_get("batch", arg, sizeof arg) &&
        (!parse_u64(arg, &batch, NULL) || batch == 0 || batch > MAX_BATCH)) {
        printf("train: bad batch '%s' (1..%u)\n", arg, MAX_BATCH);
        return 2;
    }

    const char *why = read_dataset();
    if (why) {
        printf("train: %s\n", why);
        printf("train: FAIL\n");
        return 1;
    }
    /* Fences are waited for by sleeping on an MSI-X interrupt unless vgpu_poll=1. */
    bool poll = cmdline_get("vgpu_poll", arg, sizeof arg) && strcmp(arg, "0") != 0;
    full = cmdline_get("gpu", arg, sizeof arg) && strcmp(arg, "full") == 0;
    why = gpu_open(poll);
    if (full)
        fgpu.poll = poll;
    if (why) {
        printf("train: vgpu: %s\n", why);
        printf("train: FAIL\n");
        return 1;
    }
    static const unsigned needed[] = { VGPU_OP_SGEMM, VGPU_OP_BIAS_ADD, VGPU_OP_ACTIVATION,
                                       VGPU_OP_ACTIVATION_BACKWARD, VGPU_OP_SOFTMAX_XENT, VGPU_OP_REDUCE,
                                       VGPU_OP_AXPY, VGPU_OP_SCALE, VGPU_OP_NORMALIZE_U8 };
    for (unsigned i = 0; i < sizeof needed / sizeof needed[0]; i++)
        if (!gpu_supports(needed[i])) {
            printf("train: the vGPU lacks opcode %u\n", needed[i]);
            printf("train: FAIL\n");
            return 1;
        }
    uint64_t hz = tsc_calibrate();
    if (!hz) {
        printf("train: TSC calibration failed (no PIT interrupts)\n");
        printf("train: FAIL\n");
        return 1;
    }

    uint32_t st = full ? 0 : vgpu_ctx_create(&gpu, &ctx, "train", 0);
    if (st)
        return fail_status("context", st);
    struct { struct vgpu_buf *b; uint64_t bytes; enum vgpu_mem mem; } blobs[] = {
        { &pix_train, (uint64_t)n_train * IN, VGPU_MEM_GUEST },
        { &lab_train, (uint64_t)n_train * 4, VGPU_MEM_GUEST },
        { &pix_test, (uint64_t)n_test * IN, VGPU_MEM_GUEST },
        { &loss, (uint64_t)n_train * 4, VGPU_MEM_GUEST },
        { &logits_train, (uint64_t)n_train * OUT * 4, VGPU_MEM_GUEST },
        { &logits_test, (uint64_t)n_test * OUT * 4, VGPU_MEM_GUEST },
        { &params, P_COUNT * 4, VGPU_MEM_HOST },
        { &grads, P_COUNT * 4, VGPU_MEM_HOST },
        { &velocity, P_COUNT * 4, VGPU_MEM_HOST },
        { &x_train, (uint64_t)n_train * IN * 4, VGPU_MEM_HOST },
        { &x_test, (uint64_t)n_test * IN * 4, VGPU_MEM_HOST },
        { &z1, (uint64_t)batch * HID * 4, VGPU_MEM_HOST },
        { &a1, (uint64_t)batch * HID * 4, VGPU_MEM_HOST },
        { &logits, (uint64_t)batch * OUT * 4, VGPU_MEM_HOST },
        { &dlogits, (uint64_t)batch * OUT * 4, VGPU_MEM_HOST },
        { &da1, (uint64_t)batch * HID * 4, VGPU_MEM_HOST },
        { &dz1, (uint64_t)batch * HID * 4, VGPU_MEM_HOST },
        { &h_train, (uint64_t)n_train * HID * 4, VGPU_MEM_HOST },
        { &h_test, (uint64_t)n_test * HID * 4, VGPU_MEM_HOST },
    };
    for (unsigned i = 0; i < sizeof blobs / sizeof blobs[0] && !st; i++)
        st = gpu_buf_create(blobs[i].b, blobs[i].bytes, blobs[i].mem);
    if (st)
        return fail_status("blobs", st);
    uint32_t steps = (uint32_t)((n_train + batch - 1) / batch);
    /* normalize x2 + 15 per step + 5 per evaluation pass x2 (~64 bytes each: 512 KiB is plenty) */
    uint32_t commands = 2 + steps * 15 + 10;
    uint32_t max_commands = full ? FVGPU_MAX_STREAM_COMMANDS : vgpu_capset(&gpu)->max_commands;
    if (commands > max_commands) {
        printf("train: an epoch needs %u commands, the vGPU takes %u per submission; use a larger batch=\n",
               commands, max_commands);
        return 2;
    }
    if (!vgpu_stream_init(&stream, 512u << 10))
        return fail_status("stream", VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);

    /* Parameters: uniform +-sqrt(6 / (fan_in + fan_out)), biases 0; velocity starts at 0 (HOST blobs are zeroed). */
    float *p = vgpu_f32p(&params);
    float b1 = (float)newton_sqrt(6.0 / (IN + HID)), b2 = (float)newton_sqrt(6.0 / (HID + OUT));
    for (uint32_t i = 0; i < IN * HID; i++)
        p[P_W1 + i] = uniform(b1);
    for (uint32_t i = 0; i < HID * OUT; i++)
        p[P_W2 + i] = uniform(b2);
    /* The full-vGPU computes on these very pages: nothing to move. */
    st = full ? 0 : vgpu_buf_upload(&params, 0, P_COUNT * 4);
    if (st)
        return fail_status("upload", st);
    memcpy(pix_test.ptr, test_pixels, (uint64_t)n_test * IN);
    for (uint32_t i = 0; i < n_train; i++)
        perm[i] = i;

    const char *backend = full ? "full-vGPU" : vgpu_capset(&gpu)->backend == 1 ? "vulkan" : "cpu";
    printf("train: backend %s, tsc %llu MHz; MLP %u-%u-%u (%u parameters), batch %llu, %u steps/epoch, "
           "%llu epochs, SGD lr %.3f momentum %.2f\n",
           backend, (unsigned long long)(hz / 1000000), IN, HID, OUT, P_COUNT,
           (unsigned long long)batch, steps, (unsigned long long)epochs, (double)LEARNING_RATE, (double)MOMENTUM);

    uint64_t submissions = 0, total_cycles = 0, commands_sent = 0, bytes_sent = 0;
    double test_acc = 0;
    for (uint32_t e = 1; e <= epochs; e++) {
        uint64_t t0 = rdtsc();
        record_epoch((uint32_t)batch, e == 1);
        if (stream.full)
            return fail_status("recording (stream full)", VIRTIO_GPU_STATUS_TOO_BIG);
        commands_sent += stream.count;
        bytes_sent += stream.len;
        st = gpu_run();
        submissions++;
        if (st)
            return fail_status("epoch submission", st);
        const float *l = vgpu_f32p(&loss);
        double sum = 0;
        for (uint32_t i = 0; i < n_train; i++)
            sum += l[i];
        uint32_t ok_train = correct(vgpu_f32p(&logits_train), n_train, NULL, (const uint32_t *)lab_train.ptr);
        uint32_t ok_test = correct(vgpu_f32p(&logits_test), n_test, test_labels, NULL);
        uint64_t cycles = rdtsc() - t0;
        total_cycles += cycles;
        double mean_loss = sum / n_train;
        test_acc = 100.0 * ok_test / n_test;
        printf("train: epoch %u loss %.4f train-acc %.2f%% test-acc %.2f%% time %llu ms\n", e, mean_loss,
               100.0 * ok_train / n_train, test_acc, (unsigned long long)(cycles * 1000 / hz));
        if (!(mean_loss == mean_loss) || mean_loss > 1e6) {
            printf("train: loss diverged\n");
            printf("train: FAIL\n");
            return 1;
        }
    }
    uint64_t ms = total_cycles * 1000 / hz;
    double seconds = (double)total_cycles / (double)hz;
    printf("train: %llu submissions (%llu commands, %llu KiB of stream) in %llu ms, %.0f train images/s "
           "(%.0f images/s counting evaluation)\n",
           (unsigned long long)submissions, (unsigned long long)commands_sent, (unsigned long long)(bytes_sent >> 10),
           (unsigned long long)ms, (double)(epochs * n_train) / seconds,
           (double)(epochs * (2ull * n_train + n_test)) / seconds);
    if (full && !fgpu.poll)
        printf("train: fences waited for on MSI-X vector 0x%x, %llu sleeps (%llu interrupts)\n", fgpu.vector,
               (unsigned long long)fgpu.sleeps, (unsigned long long)irq_count(fgpu.vector));
    else if (!full && gpu.dev.irq)
        printf("train: fences waited for on MSI-X vector 0x%x, %llu sleeps (%llu interrupts)\n", VGPU_MSIX_VECTOR,
               (unsigned long long)gpu.dev.sleeps, (unsigned long long)irq_count(VGPU_MSIX_VECTOR));
    else
        printf("train: fences waited for by polling\n");
    if (!full)
        vgpu_ctx_destroy(&ctx);
    printf("train: final test accuracy %.2f%%\n", test_acc);
    bool pass = test_acc >= PASS_PERCENT;
    printf("train: %s\n", pass ? "PASS" : "FAIL");
    return pass ? 0 : 1;
}
