/*
 * test=cnn: the preprocessing-heavy training job of issue #17 (docs/mlaas.md,
 * "The CNN job"): a small CNN on the 5,000 real MNIST digits of mnist.img
 * (4,000 train / 1,000 test), every kernel on the para-vGPU, with the
 * augmentation that makes preprocessing weigh: each train image resized
 * 28x28 -> 56x56 (bilinear), cropped 48x48 at a random offset inside it (no
 * padding: a shift of up to +-4 pixels, the digit never cut), normalised
 * (mean 0.1307, std 0.3081), a seeded shuffle per epoch, batches of 64. That pipeline is the MLaaS `preprocess` service's,
 * and it runs in one of two places (cnn_pp=):
 *
 *   guest   on this vCPU, with the service's own CPU reference
 *           (lib/preprocess_ref.c), one batch ahead of the GPU: batch n+1 is
 *           prepared while step n runs, into the other half of a GUEST blob
 *   host    offloaded: the guest enables `preprocess` on its disk and its
 *           context and asks for each batch with NEXT (MLAAS_REQUEST); the
 *           pixels never reach this vCPU
 *
 * For one seed both forms train on the same batches (bit-identical on the CPU
 * backend: test=preprocess checks it), so their accuracy agrees and their
 * times differ only by where the preprocessing ran.
 *
 * The model (NCHW, 1 x 48 x 48 in):
 *   conv 5x5 stride 2 pad 2, 16 channels -> ReLU -> max pool 2x2   16 x 12 x 12
 *   conv 3x3 pad 1, 32 channels -> ReLU -> max pool 2x2            32 x 6 x 6
 *   fully connected 1152 -> 10, softmax cross-entropy
 * (small on purpose: lavapipe on a 2-core host trains it at a few hundred
 * images a second, and the job is about where preprocessing runs; 6 and 12
 * channels, the first model, stayed far under 97 %; 12 and 24 reached
 * 96.0-96.3 % at 3-5 epochs; 16 and 32 reach 96.0 % over 5 epochs and
 * 97.2 / 97.3 % over 8 (seeds 42 and 7, CPU backend): 8 is the default)
 * SGD lr 0.05 decaying linearly towards 0 over the run (step n of N trains at
 * 0.05 (N - n) / N: the large early steps learn, the small late ones settle
 * in a minimum instead of bouncing around it), momentum 0.9; weights uniform +-sqrt(6 / (fan_in + fan_out))
 * from a fixed-seed splitmix64, biases 0 (malvvm bench native's MNISTCNN
 * draws the same). One step (forward, loss, backward, update: 24 kernels) is
 * one SUBMIT_3D; the test set is preprocessed once on the GPU (resize, centre
 * crop, normalise) and evaluated after every epoch in one SUBMIT_3D.
 *
 * Output:
 *   cnn: epoch N loss X test-acc Z% time T ms
 *   cnn: result: test-acc Z% train T ms vcpu-busy B ms preprocess P ms ...
 *   cnn: PASS / FAIL     (test accuracy >= cnn_pass, default 97)
 * Options: cnn_pp=guest|host (guest), cnn_epochs (8), cnn_records (train
 * records used, 4000), cnn_seed (42), cnn_pass (percent, 97), vgpu_poll=1.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/intr.h"
#include "malv/memory.h"
#include "malv/mnist.h"
#include "malv/preprocess.h"
#include "malv/splitmix.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/vgpu.h"
#include "malv/x86.h"

#define SERVICE "preprocess"
#define VGPU_MSIX_VECTOR 0x60

/* The pipeline's geometry (the service's resize/crop/padding keys). */
#define RESIZE 56u
#define SIDE 48u
#define PADDING 0u              /* the crop's +-4 pixel shift is augmentation enough; padding 4 cut digits off */
#define CENTRE ((RESIZE - SIDE) / 2u)
#define BATCH 64u
#define CLASSES 10u
/* The default run (MNISTCNN.defaultEpochs, scripts/bench-mlaas --epochs): the 8 epochs measured above. */
#define EPOCHS 8u

/* The model. */
#define C1 16u
#define K1 5u
#define S1 2u                   /* stride 2, pad 2: 48 -> 24 */
#define O1 ((SIDE + 2u * (K1 / 2u) - K1) / S1 + 1u)
#define Q1 (O1 / 2u)
#define C2 32u
#define K2 3u
#define O2 Q1                   /* pad 1 keeps the size */
#define Q2 (O2 / 2u)
#define FC_IN (C2 * Q2 * Q2)
#define PX (SIDE * SIDE)

/* Offsets in the flat parameter vector (floats). */
#define P_W1 0u
#define P_B1 (P_W1 + C1 * K1 * K1)
#define P_W2 (P_B1 + C1)
#define P_B2 (P_W2 + C2 * C1 * K2 * K2)
#define P_W3 (P_B2 + C2)
#define P_B3 (P_W3 + FC_IN * CLASSES)
#define P_COUNT (P_B3 + CLASSES)

static const float LEARNING_RATE = 0.05f, MOMENTUM = 0.9f;
static const float MEAN = 0.1307f, STD = 0.3081f;

static struct mnist_disk mnist;
static struct vgpu gpu;
static struct vgpu_ctx ctx;
static struct vgpu_stream step_stream, eval_stream;
/* Train batches: two slots each (GUEST blobs when the guest preprocesses, HOST3D when the service does). */
static struct vgpu_buf xb, lb;
/* GUEST: written or read by the guest. */
static struct vgpu_buf loss, test_pixels, test_logits;
/* HOST3D: GPU memory only. */
static struct vgpu_buf params, grads, velocity, z1, a1, p1, z2, a2, p2, logits, dlogits, dp2, d2, dp1, d1;
static struct vgpu_buf test_norm, test_resized, test_x;

static uint64_t rng_state = 0x636e6e2d6d6e6973ull;     /* "cnn-mnis" */

static float uniform(float bound) { return splitmix64_uniform(&rng_state, bound); }

static struct vgpu_conv_shape conv1_shape(uint32_t rows)
{
    return (struct vgpu_conv_shape){ rows, 1, SIDE, SIDE, C1, K1, K1, S1, S1, K1 / 2, K1 / 2 };
}

static struct vgpu_conv_shape conv2_shape(uint32_t rows)
{
    return (struct vgpu_conv_shape){ rows, C1, Q1, Q1, C2, K2, K2, 1, 1, K2 / 2, K2 / 2 };
}

/* ---- recording ---- */

/* conv-ReLU-pool twice and the fully connected layer: x (rows x 1 x 48 x 48) -> out (rows x 10). */
static void record_forward(struct vgpu_stream *s, uint32_t rows, struct vgpu_ref x, struct vgpu_ref out)
{
    const struct vgpu_conv_shape c1 = conv1_shape(rows), c2 = conv2_shape(rows);
    struct vgpu_ref b1 = vgpu_f32(&params, P_B1, C1), b2 = vgpu_f32(&params, P_B2, C2);
    struct vgpu_ref rz1 = vgpu_f32(&z1, 0, rows * C1 * O1 * O1), ra1 = vgpu_f32(&a1, 0, rows * C1 * O1 * O1);
    struct vgpu_ref rp1 = vgpu_f32(&p1, 0, rows * C1 * Q1 * Q1);
    struct vgpu_ref rz2 = vgpu_f32(&z2, 0, rows * C2 * O2 * O2), ra2 = vgpu_f32(&a2, 0, rows * C2 * O2 * O2);
    struct vgpu_ref rp2 = vgpu_f32(&p2, 0, rows * FC_IN);
    vgpu_conv2d_forward(s, &c1, x, vgpu_f32(&params, P_W1, C1 * K1 * K1), &b1, rz1);
    vgpu_relu(s, rows * C1 * O1 * O1, rz1, ra1);
    vgpu_maxpool2d_forward(s, rows, C1, O1, O1, ra1, rp1);
    vgpu_conv2d_forward(s, &c2, rp1, vgpu_f32(&params, P_W2, C2 * C1 * K2 * K2), &b2, rz2);
    vgpu_relu(s, rows * C2 * O2 * O2, rz2, ra2);
    vgpu_maxpool2d_forward(s, rows, C2, O2, O2, ra2, rp2);
    vgpu_sgemm(s, rows, CLASSES, FC_IN, 0, 1.0f, 0.0f, rp2, vgpu_f32(&params, P_W3, FC_IN * CLASSES), out);
    vgpu_bias_add(s, rows, CLASSES, 1, out, vgpu_f32(&params, P_B3, CLASSES));
}

/*
 * Step n of `steps`' learning rate: LEARNING_RATE (steps - n) / steps, in
 * single precision in this order, as MNISTCNN.learningRate(step:of:) computes
 * it, so the native form's updates are bit-identical.
 */
static float learning_rate(uint64_t n, uint64_t steps)
{
    return LEARNING_RATE * (float)(steps - n) / (float)steps;
}

/* One SGD step at learning rate `lr` on the batch in `slot` of xb/lb. */
static void record_step(uint32_t slot, float lr)
{
    struct vgpu_stream *s = &step_stream;
    const uint32_t rows = BATCH;
    const struct vgpu_conv_shape c1 = conv1_shape(rows), c2 = conv2_shape(rows);
    struct vgpu_ref x = vgpu_f32(&xb, (uint64_t)slot * BATCH * PX, rows * PX);
    struct vgpu_ref rl = vgpu_f32(&logits, 0, rows * CLASSES), rdl = vgpu_f32(&dlogits, 0, rows * CLASSES);
    struct vgpu_ref rz1 = vgpu_f32(&z1, 0, rows * C1 * O1 * O1), ra1 = vgpu_f32(&a1, 0, rows * C1 * O1 * O1);
    struct vgpu_ref rp1 = vgpu_f32(&p1, 0, rows * C1 * Q1 * Q1), rdp1 = vgpu_f32(&dp1, 0, rows * C1 * Q1 * Q1);
    struct vgpu_ref rz2 = vgpu_f32(&z2, 0, rows * C2 * O2 * O2), ra2 = vgpu_f32(&a2, 0, rows * C2 * O2 * O2);
    struct vgpu_ref rp2 = vgpu_f32(&p2, 0, rows * FC_IN), rdp2 = vgpu_f32(&dp2, 0, rows * FC_IN);
    struct vgpu_ref rd2 = vgpu_f32(&d2, 0, rows * C2 * O2 * O2), rd1 = vgpu_f32(&d1, 0, rows * C1 * O1 * O1);
    struct vgpu_ref gb1 = vgpu_f32(&grads, P_B1, C1), gb2 = vgpu_f32(&grads, P_B2, C2);

    record_forward(s, rows, x, rl);
    vgpu_softmax_xent(s, rows, CLASSES, 1.0f / (float)rows, rl, vgpu_f32(&lb, (uint64_t)slot * BATCH, rows),
                      vgpu_f32(&loss, 0, rows), rdl);
    /* Fully connected: dW3 = p2^T dl, db3 = sum_rows dl, dp2 = dl W3^T. */
    vgpu_sgemm(s, FC_IN, CLASSES, rows, VGPU_TRANSPOSE_A, 1.0f, 0.0f, rp2, rdl,
               vgpu_f32(&grads, P_W3, FC_IN * CLASSES));
    vgpu_reduce(s, VGPU_SUM, VGPU_PER_COLUMN, rows, CLASSES, rdl, vgpu_f32(&grads, P_B3, CLASSES));
    vgpu_sgemm(s, rows, FC_IN, CLASSES, VGPU_TRANSPOSE_B, 1.0f, 0.0f, rdl, vgpu_f32(&params, P_W3, FC_IN * CLASSES),
               rdp2);
    /* Block 2: pool (to the argmax), ReLU (in place: d2 is da2, then dz2), conv filter and data. */
    vgpu_maxpool2d_backward(s, rows, C2, O2, O2, ra2, rdp2, rd2);
    vgpu_activation_backward(s, VGPU_RELU, rows * C2 * O2 * O2, rz2, rd2, rd2);
    vgpu_conv2d_backward_filter(s, &c2, rp1, rd2, vgpu_f32(&grads, P_W2, C2 * C1 * K2 * K2), &gb2);
    vgpu_conv2d_backward_data(s, &c2, rd2, vgpu_f32(&params, P_W2, C2 * C1 * K2 * K2), rdp1);
    /* Block 1: the input needs no gradient. */
    vgpu_maxpool2d_backward(s, rows, C1, O1, O1, ra1, rdp1, rd1);
    vgpu_activation_backward(s, VGPU_RELU, rows * C1 * O1 * O1, rz1, rd1, rd1);
    vgpu_conv2d_backward_filter(s, &c1, x, rd1, vgpu_f32(&grads, P_W1, C1 * K1 * K1), &gb1);
    /* v = mu v + g; p -= lr v */
    struct vgpu_ref p = vgpu_f32(&params, 0, P_COUNT), g = vgpu_f32(&grads, 0, P_COUNT),
                    v = vgpu_f32(&velocity, 0, P_COUNT);
    vgpu_scale(s, P_COUNT, MOMENTUM, v);
    vgpu_axpy(s, P_COUNT, 1.0f, g, v);
    vgpu_axpy(s, P_COUNT, -lr, v, p);
}

/*
 * The test set's preprocessing, once (NORMALIZE_U8, RESIZE_BILINEAR, a centre
 * CROP: the train pipeline without its randomness), then the forward pass over
 * it in chunks of BATCH into test_logits. `first` adds the preprocessing.
 */
static void record_eval(uint32_t n_test, bool first)
{
    struct vgpu_stream *s = &eval_stream;
    vgpu_stream_reset(s);
    if (first) {
        const float mean[1] = { MEAN }, std[1] = { STD };
        vgpu_normalize_u8(s, n_test, MNIST_SIDE, MNIST_SIDE, 1, 1.0f / 255.0f, mean, std,
                          vgpu_bytes(&test_pixels, 0, n_test * MNIST_SIDE * MNIST_SIDE),
                          vgpu_f32(&test_norm, 0, n_test * MNIST_SIDE * MNIST_SIDE));
        vgpu_resize_bilinear(s, n_test, 1, MNIST_SIDE, MNIST_SIDE, RESIZE, RESIZE,
                             vgpu_f32(&test_norm, 0, n_test * MNIST_SIDE * MNIST_SIDE),
                             vgpu_f32(&test_resized, 0, n_test * RESIZE * RESIZE));
        vgpu_crop(s, n_test, 1, RESIZE, RESIZE, CENTRE, CENTRE, SIDE, SIDE,
                  vgpu_f32(&test_resized, 0, n_test * RESIZE * RESIZE), vgpu_f32(&test_x, 0, n_test * PX));
    }
    for (uint32_t at = 0; at < n_test; at += BATCH) {
        uint32_t rows = n_test - at < BATCH ? n_test - at : BATCH;
        record_forward(s, rows, vgpu_f32(&test_x, (uint64_t)at * PX, rows * PX),
                       vgpu_f32(&test_logits, (uint64_t)at * CLASSES, rows * CLASSES));
    }
}

static uint32_t correct_test(uint32_t n_test)
{
    const float *out = vgpu_f32p(&test_logits);
    uint32_t ok = 0;
    for (uint32_t r = 0; r < n_test; r++) {
        const float *o = out + (uint64_t)r * CLASSES;
        uint32_t best = 0;
        for (uint32_t c = 1; c < CLASSES; c++)
            if (o[c] > o[best])
                best = c;
        ok += best == mnist_test_record(&mnist, r)[MNIST_SIDE * MNIST_SIDE];
    }
    return ok;
}

/* ---- the batches ---- */

static bool offloaded;
static struct pp_pipeline pipeline;
static uint32_t *order;
static int64_t order_epoch = -1;
static float *pp_scratch;
static uint64_t pp_ticks, wait_ticks;

/* Batch n into `slot` on this vCPU: the service's pipeline, by its CPU reference. */
static void prepare(uint64_t n, uint32_t slot)
{
    uint64_t t0 = rdtsc();
    const uint32_t per_epoch = pipeline.records / BATCH;
    uint64_t epoch = n / per_epoch, index = n % per_epoch;
    if ((int64_t)epoch != order_epoch) {
        pp_permutation(&pipeline, epoch, order);
        order_epoch = (int64_t)epoch;
    }
    float *images = vgpu_f32p(&xb) + (uint64_t)slot * BATCH * PX;
    uint32_t *labels = (uint32_t *)lb.ptr + (uint64_t)slot * BATCH;
    for (uint32_t k = 0; k < BATCH; k++) {
        uint64_t position = index * BATCH + k;
        const uint8_t *record = mnist_train_record(&mnist, order[position]);
        pp_image(&pipeline, record, pp_draw(&pipeline, epoch, position), pp_scratch, images + (uint64_t)k * PX);
        labels[k] = record[MNIST_SIDE * MNIST_SIDE];
    }
    pp_ticks += rdtsc() - t0;
}

struct next_answer {
    uint32_t slot, count, epoch, index;
    uint64_t sequence, waited_ns;
};

/* The service's batch n (NEXT); its slot, or -1 after printing why not. */
static int64_t next_batch(uint64_t n)
{
    uint32_t request[2] = { 1, 0 }, len = 0;
    struct next_answer a;
    struct vgpu_mlaas_error err;
    uint64_t t0 = rdtsc();
    uint32_t st = vgpu_mlaas_request(&gpu, SERVICE, request, sizeof request, &a, sizeof a, &len, &err);
    wait_ticks += rdtsc() - t0;
    if (st != VIRTIO_GPU_STATUS_OK) {
        printf("cnn: NEXT: %s (%s): %s\n", vgpu_status_name(st), vgpu_mlaas_status_name(err.status), err.message);
        return -1;
    }
    if (len != sizeof a || a.sequence != n || a.count != BATCH) {
        printf("cnn: NEXT answered batch %llu of %u (%u bytes), expected batch %llu of %u\n",
               (unsigned long long)a.sequence, a.count, len, (unsigned long long)n, BATCH);
        return -1;
    }
    return a.slot;
}

static int fail(const char *what, uint32_t st)
{
    vgpu_print_failure("cnn", what, &gpu, st);
    printf("cnn: FAIL\n");
    return 1;
}

static uint32_t run_timed(struct vgpu_stream *s)
{
    struct vgpu_fence f;
    uint32_t st = vgpu_submit(&ctx, s, &f);
    if (st)
        return st;
    uint64_t t0 = rdtsc();
    st = vgpu_wait(&f);
    wait_ticks += rdtsc() - t0;
    return st;
}

int test_cnn(void)
{
    char arg[16] = "";
    cmdline_get("cnn_pp", arg, sizeof arg);
    if (arg[0] && strcmp(arg, "guest") != 0 && strcmp(arg, "host") != 0) {
        printf("cnn: bad cnn_pp '%s' (guest or host)\n", arg);
        return 2;
    }
    offloaded = strcmp(arg, "host") == 0;
    const uint32_t epochs = cmdline_u32("cnn_epochs", EPOCHS), seed = cmdline_u32("cnn_seed", 42), pass = cmdline_u32("cnn_pass", 97);

    const char *why = mnist_read(&mnist);
    if (why) {
        printf("cnn: disk: %s\ncnn: FAIL\n", why);
        return 1;
    }
    uint32_t records = cmdline_u32("cnn_records", mnist.head.train_count);
    if (records > mnist.head.train_count || records < BATCH) {
        printf("cnn: bad cnn_records %u (%u..%u)\n", records, BATCH, mnist.head.train_count);
        return 2;
    }
    const uint32_t n_test = mnist.head.test_count;
    bool poll = cmdline_get("vgpu_poll", arg, sizeof arg) && strcmp(arg, "0") != 0;
    why = poll ? vgpu_open(&gpu, 0) : vgpu_open_msix(&gpu, 0, VGPU_MSIX_VECTOR);
    if (why) {
        printf("cnn: vgpu: %s\ncnn: FAIL\n", why);
        return 1;
    }
    if (!vgpu_supports(&gpu, VGPU_OP_MAXPOOL2D_FORWARD) || !vgpu_supports(&gpu, VGPU_OP_MAXPOOL2D_BACKWARD) ||
        !vgpu_supports(&gpu, VGPU_OP_CONV2D_BACKWARD_FILTER)) {
        printf("cnn: the vGPU lacks the conv/max-pool opcodes\ncnn: FAIL\n");
        return 1;
    }
    if (offloaded && !vgpu_mlaas_available(&gpu)) {
        printf("cnn: this vGPU carries no MLaaS requests (run with --mlaas preprocess)\ncnn: FAIL\n");
        return 1;
    }
    uint64_t hz = tsc_calibrate();
    if (!hz) {
        printf("cnn: TSC calibration failed\ncnn: FAIL\n");
        return 1;
    }

    uint32_t st = vgpu_ctx_create(&gpu, &ctx, "cnn", 0);
    if (st)
        return fail("context", st);
    enum vgpu_mem batch_mem = offloaded ? VGPU_MEM_HOST : VGPU_MEM_GUEST;
    struct { struct vgpu_buf *b; uint64_t floats; enum vgpu_mem mem; } blobs[] = {
        { &xb, 2ull * BATCH * PX, batch_mem },
        { &lb, 2ull * BATCH, batch_mem },
        { &loss, BATCH, VGPU_MEM_GUEST },
        { &test_pixels, (n_test * MNIST_SIDE * MNIST_SIDE + 3) / 4, VGPU_MEM_GUEST },
        { &test_logits, (uint64_t)n_test * CLASSES, VGPU_MEM_GUEST },
        { &params, P_COUNT, VGPU_MEM_HOST },
        { &grads, P_COUNT, VGPU_MEM_HOST },
        { &velocity, P_COUNT, VGPU_MEM_HOST },
        { &z1, BATCH * C1 * O1 * O1, VGPU_MEM_HOST },
        { &a1, BATCH * C1 * O1 * O1, VGPU_MEM_HOST },
        { &d1, BATCH * C1 * O1 * O1, VGPU_MEM_HOST },
        { &p1, BATCH * C1 * Q1 * Q1, VGPU_MEM_HOST },
        { &dp1, BATCH * C1 * Q1 * Q1, VGPU_MEM_HOST },
        { &z2, BATCH * C2 * O2 * O2, VGPU_MEM_HOST },
        { &a2, BATCH * C2 * O2 * O2, VGPU_MEM_HOST },
        { &d2, BATCH * C2 * O2 * O2, VGPU_MEM_HOST },
        { &p2, BATCH * FC_IN, VGPU_MEM_HOST },
        { &dp2, BATCH * FC_IN, VGPU_MEM_HOST },
        { &logits, BATCH * CLASSES, VGPU_MEM_HOST },
        { &dlogits, BATCH * CLASSES, VGPU_MEM_HOST },
        { &test_norm, (uint64_t)n_test * MNIST_SIDE * MNIST_SIDE, VGPU_MEM_HOST },
        { &test_resized, (uint64_t)n_test * RESIZE * RESIZE, VGPU_MEM_HOST },
        { &test_x, (uint64_t)n_test * PX, VGPU_MEM_HOST },
    };
    for (unsigned i = 0; i < sizeof blobs / sizeof blobs[0] && !st; i++)
        st = vgpu_buf_create(&ctx, blobs[i].b, blobs[i].floats * 4, blobs[i].mem);
    if (st)
        return fail("blobs", st);
    if (!vgpu_stream_init(&step_stream, 16u << 10) || !vgpu_stream_init(&eval_stream, 64u << 10))
        return fail("streams", VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);

    /* Weights uniform +-sqrt(6 / (fan_in + fan_out)), biases 0; velocity 0 (HOST blobs start zeroed). */
    float *p = vgpu_f32p(&params);
    const float bound1 = (float)newton_sqrt(6.0 / (K1 * K1 + C1 * K1 * K1));
    const float bound2 = (float)newton_sqrt(6.0 / (C1 * K2 * K2 + C2 * K2 * K2));
    const float bound3 = (float)newton_sqrt(6.0 / (FC_IN + CLASSES));
    for (uint32_t i = 0; i < C1 * K1 * K1; i++)
        p[P_W1 + i] = uniform(bound1);
    for (uint32_t i = 0; i < C2 * C1 * K2 * K2; i++)
        p[P_W2 + i] = uniform(bound2);
    for (uint32_t i = 0; i < FC_IN * CLASSES; i++)
        p[P_W3 + i] = uniform(bound3);
    st = vgpu_buf_upload(&params, 0, P_COUNT * 4);
    if (st)
        return fail("upload", st);
    uint8_t *tp = test_pixels.ptr;
    for (uint32_t i = 0; i < n_test; i++)
        memcpy(tp + (uint64_t)i * MNIST_SIDE * MNIST_SIDE, mnist_test_record(&mnist, i), MNIST_SIDE * MNIST_SIDE);

    pipeline = (struct pp_pipeline){
        .records = records, .height = MNIST_SIDE, .width = MNIST_SIDE, .channels = 1, .resize_h = RESIZE,
        .resize_w = RESIZE, .crop_h = SIDE, .crop_w = SIDE, .padding = PADDING, .flip = false, .mean = { MEAN },
        .std = { STD }, .seed = seed, .batch = BATCH,
    };
    const uint64_t per_epoch = records / BATCH, steps = per_epoch * epochs;
    printf("cnn: backend %s, preprocessing on the %s; %u train records (%llu batches of %u an epoch), %u test, "
           "%u epochs, seed %u; resize %ux%u, crop %ux%u padding %u, mean %.4f std %.4f; "
           "conv%u-%u pool, conv%u-%u pool, fc %u-%u (%u parameters)\n",
           vgpu_capset(&gpu)->backend == 1 ? "vulkan" : "cpu", offloaded ? "host (MLaaS preprocess)" : "guest vCPU",
           records, (unsigned long long)per_epoch, BATCH, n_test, epochs, seed, RESIZE, RESIZE, SIDE, SIDE, PADDING,
           (double)MEAN, (double)STD, K1, C1, K2, C2, FC_IN, CLASSES, P_COUNT);

    uint64_t start = rdtsc();
    int64_t slot = 0;
    if (offloaded) {
        static char params_text[320];
        snprintf(params_text, sizeof params_text,
                 "disk=0,offset=%llu,records=%u,image=28x28x1,resize=%ux%u,crop=%ux%u,padding=%u,mean=%.4f,"
                 "std=%.4f,seed=%u,batch=%u,context=%u,images=%u,labels=%u",
                 (unsigned long long)mnist.head.train_records, records, RESIZE, RESIZE, SIDE, SIDE, PADDING,
                 (double)MEAN, (double)STD, seed, BATCH, ctx.id, xb.id, lb.id);
        struct vgpu_mlaas_error err;
        st = vgpu_mlaas_enable(&gpu, SERVICE, params_text, (uint32_t)strlen(params_text), &err);
        if (st) {
            printf("cnn: enable %s: %s (%s): %s\ncnn: FAIL\n", SERVICE, vgpu_status_name(st),
                   vgpu_mlaas_status_name(err.status), err.message);
            return 1;
        }
        slot = next_batch(0);
        if (slot < 0)
            return printf("cnn: FAIL\n"), 1;
    } else {
        order = dma_alloc(records * sizeof(uint32_t), 64);
        pp_scratch = dma_alloc(pp_scratch_values(&pipeline) * sizeof(float), 64);
        if (!order || !pp_scratch)
            return fail("preprocessing memory", VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
        prepare(0, 0);
    }

    double accuracy = 0;
    uint64_t epoch_start = start;
    double loss_sum = 0;
    for (uint64_t n = 0; n < steps; n++) {
        /* Step n runs while batch n+1 is prepared: on this vCPU, or by the service behind it. */
        vgpu_stream_reset(&step_stream);
        record_step((uint32_t)slot, learning_rate(n, steps));
        struct vgpu_fence f;
        st = vgpu_submit(&ctx, &step_stream, &f);
        if (st)
            return fail("step submission", st);
        if (!offloaded && n + 1 < steps)
            prepare(n + 1, (uint32_t)((n + 1) % 2));
        uint64_t t0 = rdtsc();
        st = vgpu_wait(&f);
        wait_ticks += rdtsc() - t0;
        if (st)
            return fail("step", st);
        for (uint32_t i = 0; i < BATCH; i++)
            loss_sum += vgpu_f32p(&loss)[i];
        if (n + 1 < steps) {
            slot = offloaded ? next_batch(n + 1) : (int64_t)((n + 1) % 2);
            if (slot < 0)
                return printf("cnn: FAIL\n"), 1;
        }
        if ((n + 1) % per_epoch == 0) {
            uint32_t e = (uint32_t)((n + 1) / per_epoch);
            record_eval(n_test, e == 1);
            if (eval_stream.full)
                return fail("recording the evaluation (stream full)", VIRTIO_GPU_STATUS_TOO_BIG);
            st = run_timed(&eval_stream);
            if (st)
                return fail("evaluation", st);
            accuracy = 100.0 * correct_test(n_test) / n_test;
            uint64_t now = rdtsc();
            double mean_loss = loss_sum / (double)(per_epoch * BATCH);
            printf("cnn: epoch %u loss %.4f test-acc %.2f%% time %llu ms\n", e, mean_loss, accuracy,
                   (unsigned long long)((now - epoch_start) * 1000 / hz));
            if (!(mean_loss == mean_loss) || mean_loss > 1e6) {
                printf("cnn: loss diverged\ncnn: FAIL\n");
                return 1;
            }
            epoch_start = now;
            loss_sum = 0;
        }
    }
    uint64_t total = rdtsc() - start;
    if (offloaded) {
        struct vgpu_mlaas_error err;
        vgpu_mlaas_disable(&gpu, SERVICE, &err);
    }
    vgpu_ctx_destroy(&ctx);
    /* Busy: everything but the waits for the GPU and for the service's batches (the vCPU sleeps or polls there). */
    uint64_t busy = total > wait_ticks ? total - wait_ticks : 0;
    printf("cnn: result: test-acc %.2f%% train %llu ms vcpu-busy %llu ms preprocess %llu ms (%s) steps %llu "
           "images/s %.0f\n",
           accuracy, (unsigned long long)(total * 1000 / hz), (unsigned long long)(busy * 1000 / hz),
           (unsigned long long)(pp_ticks * 1000 / hz), offloaded ? "host" : "guest", (unsigned long long)steps,
           (double)(steps * BATCH) * (double)hz / (double)total);
    bool ok = accuracy >= (double)pass;
    printf("cnn: %s (test accuracy %s %u%%)\n", ok ? "PASS" : "FAIL", ok ? ">=" : "<", pass);
    return ok ? 0 : 1;
}
