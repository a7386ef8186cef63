/*
 * test=vgpu-hostile: a guest that attacks its own para-vGPU.
 *
 * Context "victim" owns blobs and keeps computing; context "attacker" sends
 * everything a buggy or malicious driver could: bad ids, offsets outside
 * blobs and outside guest RAM, wrong shapes, unknown opcodes, truncated and
 * malformed command streams, truncated and oddly split descriptor chains,
 * and another context's resources. Each request must get the error response
 * docs/vgpu-protocol.md defines (or, where no response fits, its chain back
 * with used length 0), the VMM must stay up, and after every group the
 * victim must still compute exactly. Last, a descriptor pointing outside
 * guest RAM: the device must stop (NEEDS_RESET) rather than follow it, and
 * after a reset the device works again.
 *
 * One line per case; final line `vgpu-hostile: N passed, M failed`; exit 0
 * only if all passed.
 */
#include "malv/console.h"
#include "malv/format.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/system.h"
#include "malv/test.h"
#include "malv/vgpu.h"
#include "malv/x86.h"

#define BLOB_BYTES 4096u
#define BLOB_FLOATS (BLOB_BYTES / 4)
#define OP_SCALE_BYTES 32u
/* How long the device may take to notice a broken queue: seconds at any plausible TSC rate. */
#define BROKEN_QUEUE_WAIT_CYCLES 15000000000ull

static struct vgpu gpu;
static struct vgpu_ctx victim, attacker;
static struct vgpu_buf v_guest, v_host;         /* the victim's */
static struct vgpu_buf a_guest, a_host;         /* the attacker's */
static struct vgpu_stream stream;
static uint8_t *scratch;                        /* DMA: hand-made streams and requests */
static unsigned passed, failed;

static void verdict(bool ok, const char *what, const char *detail)
{
    printf("vgpu-hostile: %-52s ... %s (%s)\n", what, ok ? "ok" : "FAILED", detail);
    if (ok)
        passed++;
    else
        failed++;
}

static void expect(const char *what, uint32_t got, uint32_t want)
{
    char detail[96];
    if (got == want)
        snprintf(detail, sizeof detail, "%s", vgpu_status_name(got));
    else
        snprintf(detail, sizeof detail, "%s, want %s", vgpu_status_name(got), vgpu_status_name(want));
    verdict(got == want, what, detail);
}

static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(uint8_t *p, uint64_t v) { memcpy(p, &v, 8); }

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* The 16-byte stream header at p. */
static void stream_header(uint8_t *p, uint32_t magic, uint16_t version, uint32_t count)
{
    put32(p, magic);
    put16(p + 4, version);
    put16(p + 6, 0);
    put32(p + 8, count);
    put32(p + 12, 0);
}

/* A SCALE command at p with the given head length (the right one is 32). */
static void scale_command(uint8_t *p, uint32_t length, uint32_t count, uint32_t resource, uint64_t offset)
{
    put16(p, VGPU_OP_SCALE);
    put16(p + 2, 0);
    put32(p + 4, length);
    put32(p + 8, count);
    put32(p + 12, f32_bits(2.0f));
    put32(p + 16, resource);
    put32(p + 20, count * 4);
    put64(p + 24, offset);
}

/* SUBMIT_3D of `size` bytes at `stream` on c's timeline; waits. */
static uint32_t submit_bytes(struct vgpu_ctx *c, const void *bytes, uint32_t size)
{
    int slot = virtio_gpu_submit_3d(&gpu.dev, c->id, c->ring, c->next_fence++, bytes, size);
    return slot < 0 ? (uint32_t)-slot : virtio_gpu_wait(&gpu.dev, slot, NULL, 0, NULL);
}

/* A recorded batch on the attacker's context. */
static uint32_t attack(void)
{
    return vgpu_run(&attacker, &stream);
}

/* The victim scales and rectifies its own blob; the result must be exact. */
static void victim_computes(const char *after)
{
    float *x = vgpu_f32p(&v_guest);
    for (unsigned i = 0; i < BLOB_FLOATS; i++)
        x[i] = (float)i - 300.0f;
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, BLOB_FLOATS, -0.5f, vgpu_f32(&v_guest, 0, BLOB_FLOATS));
    vgpu_relu(&stream, BLOB_FLOATS, vgpu_f32(&v_guest, 0, BLOB_FLOATS), vgpu_f32(&v_guest, 0, BLOB_FLOATS));
    uint32_t st = vgpu_run(&victim, &stream);
    unsigned wrong = 0;
    for (unsigned i = 0; !st && i < BLOB_FLOATS; i++) {
        float want = ((float)i - 300.0f) * -0.5f;
        if (x[i] != (want > 0 ? want : 0))
            wrong++;
    }
    char what[64], detail[64];
    snprintf(what, sizeof what, "victim computes after %s", after);
    snprintf(detail, sizeof detail, "%s, %u of %u wrong", vgpu_status_name(st), wrong, BLOB_FLOATS);
    verdict(!st && wrong == 0, what, detail);
}

static uint32_t ctx_create_raw(uint32_t ctx_id, uint32_t context_init, uint32_t nlen)
{
    struct virtio_gpu_req_ctx_create rq = {
        .hdr = { .type = VIRTIO_GPU_CMD_CTX_CREATE, .ctx_id = ctx_id },
        .nlen = nlen,
        .context_init = context_init,
    };
    return virtio_gpu_call(&gpu.dev, &rq, sizeof rq, NULL, 0, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0);
}

static void bad_ids(void)
{
    expect("CTX_CREATE id 0", virtio_gpu_ctx_create(&gpu.dev, 0, "zero"), VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    expect("CTX_CREATE with the victim's id", virtio_gpu_ctx_create(&gpu.dev, victim.id, "dup"),
           VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    expect("CTX_CREATE on capset 1 (virgl)", ctx_create_raw(4000, 1, 0), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("CTX_CREATE with reserved context_init bits", ctx_create_raw(4001, 0x100 | VIRTIO_GPU_CAPSET_MALVVM_COMPUTE, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("CTX_CREATE with a 65-byte name", ctx_create_raw(4002, VIRTIO_GPU_CAPSET_MALVVM_COMPUTE, 65),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("CTX_DESTROY unknown context 4242", virtio_gpu_ctx_destroy(&gpu.dev, 4242),
           VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 4, 2.0f, vgpu_f32(&a_guest, 0, 4));
    stream_header(stream.data, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, stream.count);
    int slot = virtio_gpu_submit_3d(&gpu.dev, 4242, -1, 1, stream.data, stream.len);
    expect("SUBMIT_3D to unknown context 4242",
           slot < 0 ? (uint32_t)-slot : virtio_gpu_wait(&gpu.dev, slot, NULL, 0, NULL),
           VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    expect("RESOURCE_CREATE_BLOB id 0",
           virtio_gpu_create_blob(&gpu.dev, attacker.id, 0, VIRTIO_GPU_BLOB_MEM_HOST3D, 0, 4096, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    expect("RESOURCE_CREATE_BLOB with the victim's resource id",
           virtio_gpu_create_blob(&gpu.dev, attacker.id, v_guest.id, VIRTIO_GPU_BLOB_MEM_HOST3D, 0, 4096, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    expect("RESOURCE_CREATE_BLOB HOST3D for unknown context",
           virtio_gpu_create_blob(&gpu.dev, 4242, 5000, VIRTIO_GPU_BLOB_MEM_HOST3D, 0, 4096, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    expect("RESOURCE_UNREF unknown 777777", virtio_gpu_resource_unref(&gpu.dev, 777777),
           VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    struct virtio_gpu_mem_entry e = { virt_to_phys(scratch), 4096, 0 };
    expect("ATTACH_BACKING to unknown resource", virtio_gpu_attach_backing(&gpu.dev, 777777, &e, 1),
           VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    expect("CTX_ATTACH_RESOURCE unknown resource", virtio_gpu_ctx_attach(&gpu.dev, attacker.id, 777777, false),
           VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    expect("CTX_ATTACH_RESOURCE to unknown context", virtio_gpu_ctx_attach(&gpu.dev, 4242, a_guest.id, false),
           VIRTIO_GPU_RESP_ERR_INVALID_CONTEXT_ID);
    expect("CTX_DETACH_RESOURCE never attached", virtio_gpu_ctx_attach(&gpu.dev, attacker.id, v_host.id, true),
           VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    uint32_t id, maxv, size;
    expect("GET_CAPSET_INFO index 7", virtio_gpu_get_capset_info(&gpu.dev, 7, &id, &maxv, &size),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    uint8_t cap[40];
    expect("GET_CAPSET id 1 (virgl)", virtio_gpu_get_capset(&gpu.dev, 1, 1, cap, sizeof cap),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("GET_CAPSET version 3", virtio_gpu_get_capset(&gpu.dev, VIRTIO_GPU_CAPSET_MALVVM_COMPUTE, 3, cap, sizeof cap),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct virtio_gpu_ctrl_hdr unknown = { .type = 0x0999 };
    expect("unknown control type 0x999",
           virtio_gpu_call(&gpu.dev, &unknown, sizeof unknown, NULL, 0, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_UNSPEC);
    struct virtio_gpu_ctrl_hdr flagged = { .type = VIRTIO_GPU_CMD_GET_DISPLAY_INFO, .flags = 0x80 };
    expect("unknown header flag 0x80",
           virtio_gpu_call(&gpu.dev, &flagged, sizeof flagged, NULL, 0, VIRTIO_GPU_RESP_OK_DISPLAY_INFO, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    victim_computes("bad ids");
}

static void bad_ranges(void)
{
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 4, 2.0f, (struct vgpu_ref){ a_guest.id, 16, BLOB_BYTES });
    expect("operand at the blob's end", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 2, 2.0f, (struct vgpu_ref){ a_guest.id, 8, BLOB_BYTES - 4 });
    expect("operand straddling the blob's end", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 2, 2.0f, (struct vgpu_ref){ a_guest.id, 8, UINT64_MAX - 3 });
    expect("operand offset wrapping 2^64", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 2, 2.0f, (struct vgpu_ref){ a_guest.id, 8, 2 });
    expect("operand offset not f32-aligned", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 0, 2.0f, (struct vgpu_ref){ a_guest.id, 0, 0 });
    expect("empty operand", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);

    expect("TRANSFER past the blob's end", virtio_gpu_transfer(&gpu.dev, attacker.id, a_host.id, true, 4000, 200, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("TRANSFER past the backing's end", virtio_gpu_transfer(&gpu.dev, attacker.id, a_host.id, false, 0, 64, 4090),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("TRANSFER of 0 bytes", virtio_gpu_transfer(&gpu.dev, attacker.id, a_host.id, true, 0, 0, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);

    /* Backing entries outside guest RAM, wrapping, empty; a GUEST blob its entries do not cover. */
    uint32_t spare = 6000;
    expect("HOST3D blob for the backing tests",
           virtio_gpu_create_blob(&gpu.dev, attacker.id, spare, VIRTIO_GPU_BLOB_MEM_HOST3D, 0, 8192, NULL, 0), 0);
    struct virtio_gpu_mem_entry outside = { 1ull << 40, 4096, 0 };
    expect("backing at 1 TiB, outside guest RAM", virtio_gpu_attach_backing(&gpu.dev, spare, &outside, 1),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct virtio_gpu_mem_entry wrapping = { UINT64_MAX - 4095, 8192, 0 };
    expect("backing wrapping past 2^64", virtio_gpu_attach_backing(&gpu.dev, spare, &wrapping, 1),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct virtio_gpu_mem_entry empty = { virt_to_phys(scratch), 0, 0 };
    struct virtio_gpu_mem_entry short_entry = { virt_to_phys(scratch), 4096, 0 };
    expect("empty backing entry", virtio_gpu_attach_backing(&gpu.dev, spare, &empty, 1),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct virtio_gpu_req_attach_backing none = {
        .hdr = { .type = VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING }, .resource_id = spare, .nr_entries = 0,
    };
    expect("ATTACH_BACKING with no entries",
           virtio_gpu_call(&gpu.dev, &none, sizeof none, NULL, 0, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    none.nr_entries = 1000;
    /* A request shorter than its entries is a truncated request: UNSPEC, as QEMU answers it. */
    expect("ATTACH_BACKING promising 1000 entries, sending 1",
           virtio_gpu_call(&gpu.dev, &none, sizeof none, &short_entry, sizeof short_entry, VIRTIO_GPU_RESP_OK_NODATA,
                           24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_UNSPEC);
    expect("GUEST blob of 8 KiB backed by 4 KiB",
           virtio_gpu_create_blob(&gpu.dev, attacker.id, spare + 1, VIRTIO_GPU_BLOB_MEM_GUEST, 0, 8192, &short_entry, 1),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("blob of 0 bytes",
           virtio_gpu_create_blob(&gpu.dev, attacker.id, spare + 2, VIRTIO_GPU_BLOB_MEM_HOST3D, 0, 0, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("blob larger than the profile's memory",
           virtio_gpu_create_blob(&gpu.dev, attacker.id, spare + 3, VIRTIO_GPU_BLOB_MEM_HOST3D, 0,
                                  vgpu_capset(&gpu)->memory_bytes + 4096, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("unref of the spare blob", virtio_gpu_resource_unref(&gpu.dev, spare), 0);
    victim_computes("bad ranges");
}

static void bad_shapes(void)
{
    struct vgpu_ref r16 = vgpu_f32(&a_guest, 0, 16), r15 = vgpu_f32(&a_guest, 16, 15), out = vgpu_f32(&a_guest, 64, 16);
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, 4, 4, 4, 0, 1, 0, r16, r15, out);
    expect("SGEMM 4x4x4 with a 15-element B", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, 0, 4, 4, 0, 1, 0, r16, r16, out);
    expect("SGEMM with m = 0", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, 65536, 65536, 1, 0, 1, 0, r16, r16, out);
    expect("SGEMM 65536x65536 (shape overflows)", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    struct vgpu_conv_shape conv = { .batch = 1, .in_channels = 1, .height = 3, .width = 3, .out_channels = 1,
                                    .kernel_h = 5, .kernel_w = 5, .stride_y = 1, .stride_x = 1 };
    vgpu_stream_reset(&stream);
    vgpu_conv2d_forward(&stream, &conv, vgpu_f32(&a_guest, 0, 9), vgpu_f32(&a_guest, 16, 25), NULL,
                        vgpu_f32(&a_guest, 64, 1));
    expect("CONV2D 5x5 kernel over a 3x3 input", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    conv.kernel_h = conv.kernel_w = 3;
    conv.stride_y = 0;
    vgpu_stream_reset(&stream);
    vgpu_conv2d_forward(&stream, &conv, vgpu_f32(&a_guest, 0, 9), vgpu_f32(&a_guest, 16, 9), NULL,
                        vgpu_f32(&a_guest, 64, 1));
    expect("CONV2D with stride 0", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_copy(&stream, vgpu_f32(&a_guest, 0, 16), vgpu_f32(&a_guest, 8, 16));
    expect("COPY between overlapping ranges", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_crop(&stream, 1, 1, 4, 4, 2, 0, 4, 4, r16, out);
    expect("CROP reaching past the image", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_softmax_xent(&stream, 4, 4, 1, r16, vgpu_f32(&a_guest, 32, 3), vgpu_f32(&a_guest, 40, 4), out);
    expect("SOFTMAX_XENT with 3 labels for 4 rows", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    vgpu_stream_reset(&stream);
    vgpu_activation(&stream, (enum vgpu_activation)7, 16, r16, out);
    expect("ACTIVATION kind 7", attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    victim_computes("bad shapes");
}

static void bad_opcodes(void)
{
    static const uint16_t opcodes[] = { 0, VGPU_OP_COUNT, 99, 0xffff };
    uint8_t body[24] = { 0 };
    for (unsigned i = 0; i < sizeof opcodes / sizeof opcodes[0]; i++) {
        char what[48];
        snprintf(what, sizeof what, "unknown opcode %u", opcodes[i]);
        vgpu_stream_reset(&stream);
        vgpu_scale(&stream, 4, 2.0f, vgpu_f32(&a_guest, 0, 4));
        vgpu_raw(&stream, opcodes[i], body, sizeof body);
        expect(what, attack(), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    }
    /* Command flags must be zero. */
    stream_header(scratch, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 1);
    scale_command(scratch + 16, OP_SCALE_BYTES, 4, a_guest.id, 0);
    put16(scratch + 18, 1);
    expect("command with flags 1", submit_bytes(&attacker, scratch, 16 + OP_SCALE_BYTES),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    victim_computes("unknown opcodes");
}

/* Hand-made streams: each differs from a good one-SCALE stream in one way. */
static void bad_streams(void)
{
    uint8_t *p = scratch;
    const uint32_t good = 16 + OP_SCALE_BYTES;
    float before = vgpu_f32p(&a_guest)[0];

    stream_header(p, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 1);
    scale_command(p + 16, OP_SCALE_BYTES, 4, a_guest.id, 0);
    expect("stream cut inside its header (8 bytes)", submit_bytes(&attacker, p, 8), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    expect("stream cut inside its command", submit_bytes(&attacker, p, good - 4), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    put32(p, 0x12345678);
    expect("stream with a bad magic", submit_bytes(&attacker, p, good), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    stream_header(p, VGPU_STREAM_MAGIC, 2, 1);
    expect("stream version 2", submit_bytes(&attacker, p, good), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    stream_header(p, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 2);
    expect("count 2 with one command", submit_bytes(&attacker, p, good), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    stream_header(p, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 0);
    expect("count 0", submit_bytes(&attacker, p, 16), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    stream_header(p, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 5000);
    expect("count 5000 (over max_commands)", submit_bytes(&attacker, p, good), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    stream_header(p, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 1);
    put32(p + 12, 7);
    expect("reserved header word 7", submit_bytes(&attacker, p, good), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    stream_header(p, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 1);
    scale_command(p + 16, 16, 4, a_guest.id, 0);
    expect("command length 16 (body truncated)", submit_bytes(&attacker, p, 16 + 16), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    scale_command(p + 16, 0, 4, a_guest.id, 0);
    expect("command length 0", submit_bytes(&attacker, p, good), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    scale_command(p + 16, 0xfffffff0u, 4, a_guest.id, 0);
    expect("command length running past the stream", submit_bytes(&attacker, p, good),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    scale_command(p + 16, OP_SCALE_BYTES, 4, a_guest.id, 0);
    memset(p + good, 0, 8);
    expect("trailing bytes after the last command", submit_bytes(&attacker, p, good + 8),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);

    /* SUBMIT_3D's own fields. */
    struct virtio_gpu_req_submit rq = {
        .hdr = { .type = VIRTIO_GPU_CMD_SUBMIT_3D, .flags = VIRTIO_GPU_FLAG_FENCE, .fence_id = attacker.next_fence++,
                 .ctx_id = attacker.id },
        .size = 0,
    };
    if (attacker.ring >= 0) {
        rq.hdr.flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
        rq.hdr.ring_idx = (uint8_t)attacker.ring;
    }
    expect("SUBMIT_3D of size 0",
           virtio_gpu_call(&gpu.dev, &rq, sizeof rq, p, good, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    rq.hdr.fence_id = attacker.next_fence++;
    rq.size = good + 4096;
    expect("SUBMIT_3D size beyond the bytes sent",
           virtio_gpu_call(&gpu.dev, &rq, sizeof rq, p, good, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    rq.hdr.fence_id = attacker.next_fence++;
    rq.size = 2u << 20;
    expect("SUBMIT_3D size 2 MiB (over the limit)",
           virtio_gpu_call(&gpu.dev, &rq, sizeof rq, p, good, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    rq.hdr.fence_id = attacker.next_fence++;
    rq.size = good;
    rq.padding = 1;
    expect("SUBMIT_3D with an in-fence",
           virtio_gpu_call(&gpu.dev, &rq, sizeof rq, p, good, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    rq.hdr.fence_id = attacker.next_fence++;
    rq.padding = 0;
    rq.hdr.flags |= VIRTIO_GPU_FLAG_INFO_RING_IDX;
    rq.hdr.ring_idx = 64;
    expect("SUBMIT_3D on ring 64",
           virtio_gpu_call(&gpu.dev, &rq, sizeof rq, p, good, VIRTIO_GPU_RESP_OK_NODATA, 24, NULL, 0),
           VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);

    char detail[48];
    snprintf(detail, sizeof detail, "a_guest[0] %s", vgpu_f32p(&a_guest)[0] == before ? "unchanged" : "CHANGED");
    verdict(vgpu_f32p(&a_guest)[0] == before, "no refused stream ran anything", detail);
    stream_header(p, VGPU_STREAM_MAGIC, VGPU_STREAM_VERSION, 1);
    scale_command(p + 16, OP_SCALE_BYTES, 4, a_guest.id, 0);
    expect("the same stream, well formed, runs", submit_bytes(&attacker, p, good), 0);
    snprintf(detail, sizeof detail, "a_guest[0] %s", vgpu_f32p(&a_guest)[0] == before * 2 ? "doubled" : "WRONG");
    verdict(vgpu_f32p(&a_guest)[0] == before * 2, "...and computes", detail);
    victim_computes("bad streams");
}

/* Sends a hand-laid chain; returns the status and the used length the device reported. */
static uint32_t chain(const struct virtq_buf *bufs, unsigned n, uint32_t resp_room, uint32_t expect_type,
                      uint32_t *used)
{
    int slot = virtio_gpu_send_chain(&gpu.dev, bufs, n, resp_room, NULL, expect_type, 24);
    if (slot < 0)
        return (uint32_t)-slot;
    virtio_gpu_kick(&gpu.dev);
    return virtio_gpu_wait(&gpu.dev, slot, NULL, 0, used);
}

static void bad_chains(void)
{
    uint8_t *req = scratch;
    struct virtio_gpu_req_capset_info info = { .hdr = { .type = VIRTIO_GPU_CMD_GET_CAPSET_INFO } };
    memcpy(req, &info, sizeof info);
    uint32_t used = 99;
    struct virtq_buf one = { virt_to_phys(req), 16, false };
    uint32_t st = chain(&one, 1, VIRTIO_GPU_RESP_BYTES, VIRTIO_GPU_RESP_OK_CAPSET_INFO, &used);
    expect("request of 16 bytes (no whole header)", st, VIRTIO_GPU_RESP_ERR_UNSPEC);

    one.len = 24;
    expect("GET_CAPSET_INFO without its index", chain(&one, 1, VIRTIO_GPU_RESP_BYTES,
                                                      VIRTIO_GPU_RESP_OK_CAPSET_INFO, &used),
           VIRTIO_GPU_RESP_ERR_UNSPEC);

    one.len = sizeof info;
    st = chain(&one, 1, 8, VIRTIO_GPU_RESP_OK_CAPSET_INFO, &used);
    char detail[64];
    snprintf(detail, sizeof detail, "used length %u", used);
    verdict(st == VIRTIO_GPU_STATUS_BAD_RESPONSE && used == 0, "response room of 8 bytes (returned empty)", detail);

    expect("response room of 24 bytes for a 40-byte answer",
           chain(&one, 1, 24, VIRTIO_GPU_RESP_OK_CAPSET_INFO, &used), VIRTIO_GPU_RESP_ERR_UNSPEC);

    used = 99;
    st = chain(&one, 1, 0, VIRTIO_GPU_RESP_OK_CAPSET_INFO, &used);
    snprintf(detail, sizeof detail, "used length %u", used);
    verdict(st == VIRTIO_GPU_STATUS_BAD_RESPONSE && used == 0, "no writable descriptor (returned empty)", detail);

    /* Legal but odd: the request split byte by byte over 32 descriptors. */
    struct virtq_buf bytes[32];
    for (unsigned i = 0; i < 32; i++)
        bytes[i] = (struct virtq_buf){ virt_to_phys(req + i), 1, false };
    expect("request split over 32 one-byte descriptors",
           chain(bytes, 32, VIRTIO_GPU_RESP_BYTES, VIRTIO_GPU_RESP_OK_CAPSET_INFO, &used), 0);
    victim_computes("truncated chains");
}

static void foreign(void)
{
    float before = vgpu_f32p(&v_guest)[0];
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 4, 2.0f, vgpu_f32(&v_guest, 0, 4));
    expect("attacker computes on the victim's blob", attack(), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    expect("attacker attaches the victim's blob (allowed)", virtio_gpu_ctx_attach(&gpu.dev, attacker.id, v_guest.id, false), 0);
    expect("...and still cannot compute on it", attack(), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    vgpu_stream_reset(&stream);
    vgpu_copy(&stream, vgpu_f32(&v_host, 0, 16), vgpu_f32(&a_guest, 0, 16));
    expect("attacker copies the victim's HOST3D blob out", attack(), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    expect("attacker transfers from the victim's HOST3D blob",
           virtio_gpu_transfer(&gpu.dev, attacker.id, v_host.id, false, 0, 64, 0), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    expect("attacker transfers to the victim's HOST3D blob",
           virtio_gpu_transfer(&gpu.dev, attacker.id, v_host.id, true, 0, 64, 0), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
    char detail[48];
    snprintf(detail, sizeof detail, "v_guest[0] %s", vgpu_f32p(&v_guest)[0] == before ? "unchanged" : "CHANGED");
    verdict(vgpu_f32p(&v_guest)[0] == before, "victim's data untouched", detail);
    victim_computes("foreign resources");
}

/*
 * A descriptor outside guest RAM is a broken queue, not a bad request: the
 * device must not follow it, and says so with NEEDS_RESET (virtio 1.2
 * §2.1.2). The driver then resets, and everything works again.
 */
static void broken_queue(void)
{
    struct virtq_buf outside = { 1ull << 40, 64, false };
    int slot = virtio_gpu_send_chain(&gpu.dev, &outside, 1, VIRTIO_GPU_RESP_BYTES, NULL, VIRTIO_GPU_RESP_OK_NODATA, 24);
    if (slot < 0) {
        expect("descriptor at 1 TiB queued", (uint32_t)-slot, 0);
        return;
    }
    virtio_gpu_kick(&gpu.dev);
    uint64_t start = rdtsc();
    while (!virtio_pci_needs_reset(&gpu.dev.vp) && rdtsc() - start < BROKEN_QUEUE_WAIT_CYCLES)
        cpu_relax();
    bool stopped = virtio_pci_needs_reset(&gpu.dev.vp);
    verdict(stopped, "descriptor at 1 TiB: device needs reset", stopped ? "DEVICE_NEEDS_RESET" : "no reaction");

    const char *why = vgpu_open(&gpu, 0);
    verdict(!why, "reset and reopen", why ? why : "ok");
    if (why)
        return;
    uint32_t st = vgpu_ctx_create(&gpu, &victim, "victim-again", 0);
    if (!st)
        st = vgpu_buf_create(&victim, &v_guest, BLOB_BYTES, VGPU_MEM_GUEST);
    expect("a new context and blob after the reset", st, 0);
    if (!st)
        victim_computes("a broken queue and reset");
}

int test_vgpu_hostile(void)
{
    const char *why = vgpu_open(&gpu, 0);
    if (why) {
        printf("vgpu-hostile: open: %s\n", why);
        printf("vgpu-hostile: 0 passed, 1 failed\n");
        return 1;
    }
    uint32_t st = vgpu_ctx_create(&gpu, &victim, "victim", 0);
    if (!st)
        st = vgpu_ctx_create(&gpu, &attacker, "attacker", 3);
    if (!st)
        st = vgpu_buf_create(&victim, &v_guest, BLOB_BYTES, VGPU_MEM_GUEST);
    if (!st)
        st = vgpu_buf_create(&victim, &v_host, BLOB_BYTES, VGPU_MEM_HOST);
    if (!st)
        st = vgpu_buf_create(&attacker, &a_guest, BLOB_BYTES, VGPU_MEM_GUEST);
    if (!st)
        st = vgpu_buf_create(&attacker, &a_host, BLOB_BYTES, VGPU_MEM_HOST);
    scratch = dma_alloc(3 * 4096, 4096);
    if (st || !scratch || !vgpu_stream_init(&stream, 64 * 1024)) {
        printf("vgpu-hostile: setup: %s\n", st ? vgpu_status_name(st) : "out of DMA memory");
        printf("vgpu-hostile: 0 passed, 1 failed\n");
        return 1;
    }
    for (unsigned i = 0; i < BLOB_FLOATS; i++)
        vgpu_f32p(&a_guest)[i] = (float)i + 1.0f;

    victim_computes("setup");
    bad_ids();
    bad_ranges();
    bad_shapes();
    bad_opcodes();
    bad_streams();
    bad_chains();
    foreign();
    broken_queue();

    printf("vgpu-hostile: %u passed, %u failed\n", passed, failed);
    return failed ? 1 : 0;
}
