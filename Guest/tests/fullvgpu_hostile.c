/*
 * test=fullvgpu-hostile: a guest attacking its own full-vGPU. Each bad ring,
 * register, command, page table or stream must stop the vGPU with the fault
 * the G-VMCS model defines (docs/fullvgpu.md, docs/gvmcs.md "Exits" and
 * "Entry checks"), read back from the FAULT_* registers; then the guest
 * resets the vGPU and a good kernel must compute again.
 *   fullvgpu-hostile: <case> ... ok (reason R qual Q)
 *   fullvgpu-hostile: PASS | FAIL (N of M cases)
 */
#include "malv/console.h"
#include "malv/format.h"
#include "malv/fullvgpu.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/test.h"

#define ANY 0xffffffffu
#define OUTSIDE_RAM 0x300000000000ull   /* guest-physical: far above any RAM we are given, inside the 46-bit width */

static struct fvgpu gpu;
static struct vgpu_stream stream;
static struct vgpu_buf data, readonly_buf;
static unsigned passed, failed;

static void report(const char *name, bool ok, const char *detail)
{
    if (ok)
        passed++;
    else
        failed++;
    printf("fullvgpu-hostile: %-46s ... %s (%s)\n", name, ok ? "ok" : "FAIL", detail);
}

/* A good kernel after the reset: 64 floats doubled. */
static bool recovers(void)
{
    uint32_t st = fvgpu_reset(&gpu);
    if (st)
        return false;
    float *x = (float *)data.ptr;
    for (unsigned i = 0; i < 64; i++)
        x[i] = (float)i;
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 64, 2.0f, vgpu_f32(&data, 0, 64));
    if (fvgpu_run(&gpu, &stream))
        return false;
    for (unsigned i = 0; i < 64; i++)
        if (x[i] != 2.0f * (float)i)
            return false;
    return true;
}

/* `st` must be a fault with `reason` (and `qual`, `address` unless ANY); then the vGPU must recover. */
static void expect(const char *name, uint32_t st, uint32_t reason, uint32_t qual, uint64_t address)
{
    char detail[160];
    if (st != FVGPU_ERR_FAULT) {
        snprintf(detail, sizeof detail, "no fault: %s", fvgpu_error_name(st));
        report(name, false, detail);
        recovers();
        return;
    }
    const struct fvgpu_fault fault = gpu.fault, *f = &fault;
    bool ok = f->reason == reason && (qual == ANY || f->qualification == qual)
              && (address == ANY || f->address == address) && (f->status & FVGPU_STATUS_FAULTED);
    bool back = recovers();
    snprintf(detail, sizeof detail, "reason 0x%x qual 0x%x address 0x%llx%s", f->reason, f->qualification,
             (unsigned long long)f->address, back ? "" : "; did NOT recover");
    report(name, ok && back, detail);
}

/* Re-enables with one setup register replaced. */
static uint32_t enable_with(unsigned reg, uint64_t value, bool wide)
{
    fvgpu_reg_write(&gpu, FVGPU_CONTROL, FVGPU_CONTROL_RESET);
    if (wide)
        fvgpu_reg_write64(&gpu, reg, value);
    else
        fvgpu_reg_write(&gpu, reg, (uint32_t)value);
    return fvgpu_enable(&gpu);
}

static uint64_t ring_base(void)
{
    return fvgpu_reg(&gpu, FVGPU_RING_BASE) | (uint64_t)fvgpu_reg(&gpu, FVGPU_RING_BASE + 4) << 32;
}

/* One command and a fence, waited for. */
static uint32_t submit(uint64_t w0, uint64_t w1, uint64_t w2, uint64_t w3)
{
    uint64_t fence = gpu.next_fence++;
    const uint64_t cmds[2][4] = { { w0, w1, w2, w3 }, { FVGPU_FENCE, fence, 0, 0 } };
    uint32_t st = fvgpu_submit(&gpu, cmds, 2);
    return st ? st : fvgpu_wait(&gpu, fence);
}

static void setup_cases(void)
{
    uint64_t base = ring_base();
    uint64_t root = virt_to_phys(gpu.pml4);
    expect("ring size 3 (not a power of two)", enable_with(FVGPU_RING_SIZE, 3, false), FVGPU_FAULT_ENTRY_FAILURE, 43, ANY);
    expect("ring size 0", enable_with(FVGPU_RING_SIZE, 0, false), FVGPU_FAULT_ENTRY_FAILURE, 43, ANY);
    expect("ring base not 4 KiB-aligned", enable_with(FVGPU_RING_BASE, base + 32, true), FVGPU_FAULT_ENTRY_FAILURE, 41, ANY);
    expect("ring base beyond 2^48", enable_with(FVGPU_RING_BASE, 1ull << 48, true), FVGPU_FAULT_ENTRY_FAILURE, 42, ANY);
    expect("page-table root not 4 KiB-aligned", enable_with(FVGPU_PAGE_TABLE_ROOT, root + 8, true),
           FVGPU_FAULT_ENTRY_FAILURE, 46, ANY);
    expect("completion page outside guest RAM", enable_with(FVGPU_COMPLETION_PAGE, OUTSIDE_RAM, true),
           FVGPU_FAULT_COMPLETION_PAGE, ANY, OUTSIDE_RAM);
    expect("completion page not page-aligned", enable_with(FVGPU_COMPLETION_PAGE, virt_to_phys((void *)gpu.completion) + 8, true),
           FVGPU_FAULT_COMPLETION_PAGE, ANY, ANY);
    expect("tail shadow outside guest RAM", enable_with(FVGPU_TAIL_SHADOW, OUTSIDE_RAM, true),
           FVGPU_FAULT_TAIL_SHADOW, ANY, OUTSIDE_RAM);

    /* A ring at an unmapped GPU address enables (nothing is fetched) and faults on the first command. */
    uint64_t unmapped = fvgpu_reserve(&gpu, 4096);
    uint32_t st = enable_with(FVGPU_RING_BASE, unmapped, true);
    if (st == 0)
        st = submit(FVGPU_NOP, 0, 0, 0);
    expect("ring at an unmapped GPU address", st, FVGPU_FAULT_PAGE_FAULT, ANY, unmapped);

    /* The page table root outside RAM: the first walk is a G-EPT violation. */
    st = enable_with(FVGPU_PAGE_TABLE_ROOT, OUTSIDE_RAM, true);
    if (st == 0)
        st = submit(FVGPU_NOP, 0, 0, 0);
    expect("page-table root outside guest RAM", st, FVGPU_FAULT_GEPT_VIOLATION, ANY, ANY);
}

static void command_cases(void)
{
    expect("unknown opcode 0x77", submit(0x77, 0, 0, 0), FVGPU_FAULT_INVALID_COMMAND, 1, ANY);
    expect("nop with an operand set", submit(FVGPU_NOP, 1, 0, 0), FVGPU_FAULT_INVALID_COMMAND, 2, ANY);
    expect("write64 to a misaligned address", submit(FVGPU_WRITE64, data.base + 4, 1, 0), FVGPU_FAULT_INVALID_COMMAND, 3, ANY);
    expect("fence on vector 5", submit(5ull << 32 | FVGPU_FENCE, 1, 0, 0), FVGPU_FAULT_INVALID_COMMAND, 5, ANY);
    expect("dispatch of unknown kernel 9", submit(9ull << 32 | FVGPU_DISPATCH, data.base, data.base + 4096, 64),
           FVGPU_FAULT_INVALID_COMMAND, 6, ANY);
    expect("dispatch of 0 bytes", submit(1ull << 32 | FVGPU_DISPATCH, data.base, data.base, 0), FVGPU_FAULT_INVALID_COMMAND, 4, ANY);
    expect("execute of 8 bytes", submit(FVGPU_EXECUTE, data.base, 8, 0), FVGPU_FAULT_INVALID_COMMAND, 4, ANY);

    uint64_t hole = fvgpu_reserve(&gpu, 4096);
    expect("write64 to an unmapped GPU address", submit(FVGPU_WRITE64, hole, 1, 0), FVGPU_FAULT_PAGE_FAULT, 2, hole);
    expect("write64 to a read-only mapping", submit(FVGPU_WRITE64, readonly_buf.base, 1, 0), FVGPU_FAULT_PAGE_FAULT, 3,
           readonly_buf.base);
    expect("execute of an unmapped stream", submit(FVGPU_EXECUTE, hole, 64, 0), FVGPU_FAULT_PAGE_FAULT, 0, hole);

    uint64_t foreign = fvgpu_reserve(&gpu, 4096);
    fvgpu_set_pte(&gpu, foreign, OUTSIDE_RAM | FVGPU_PTE_PRESENT | FVGPU_PTE_WRITABLE);
    expect("a page table entry pointing outside RAM", submit(FVGPU_WRITE64, foreign, 1, 0), FVGPU_FAULT_GEPT_VIOLATION, ANY,
           foreign);

    /* Kernel streams */
    memset(data.ptr, 0xab, 256);
    expect("stream with a bad magic", submit(FVGPU_EXECUTE, data.base, 256, 0), FVGPU_FAULT_INVALID_COMMAND, 8, ANY);

    uint64_t fence;
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 64, 2.0f, (struct vgpu_ref){ 0, 256, hole });
    uint32_t st = fvgpu_execute(&gpu, &stream, &fence);
    expect("stream naming an unmapped buffer", st ? st : fvgpu_wait(&gpu, fence), FVGPU_FAULT_PAGE_FAULT, ANY, hole);

    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 64, 2.0f, (struct vgpu_ref){ 0, 256, foreign });
    st = fvgpu_execute(&gpu, &stream, &fence);
    expect("stream naming memory outside RAM", st ? st : fvgpu_wait(&gpu, fence), FVGPU_FAULT_GEPT_VIOLATION, ANY, foreign);

    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 64, 2.0f, vgpu_f32(&readonly_buf, 0, 64));
    st = fvgpu_execute(&gpu, &stream, &fence);
    expect("stream writing a read-only buffer", st ? st : fvgpu_wait(&gpu, fence), FVGPU_FAULT_PAGE_FAULT, 3, readonly_buf.base);

    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 64, 2.0f, (struct vgpu_ref){ 7, 256, data.base });
    st = fvgpu_execute(&gpu, &stream, &fence);
    expect("stream naming a resource id", st ? st : fvgpu_wait(&gpu, fence), FVGPU_FAULT_INVALID_COMMAND, 8, ANY);

    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 64, 2.0f, vgpu_f32(&data, 0, 63));
    st = fvgpu_execute(&gpu, &stream, &fence);
    expect("stream with a buffer shorter than the kernel", st ? st : fvgpu_wait(&gpu, fence), FVGPU_FAULT_INVALID_COMMAND, 8, ANY);

    /* Two 4 GiB references: more than the 4 GiB profile, refused before anything is translated. */
    vgpu_stream_reset(&stream);
    vgpu_scale(&stream, 0x3ffffffc, 2.0f, (struct vgpu_ref){ 0, 0xfffffff0u, 0x200000000000ull });
    vgpu_scale(&stream, 0x3ffffffc, 2.0f, (struct vgpu_ref){ 0, 0xfffffff0u, 0x210000000000ull });
    st = fvgpu_execute(&gpu, &stream, &fence);
    expect("stream binding more than the vGPU's memory", st ? st : fvgpu_wait(&gpu, fence), FVGPU_FAULT_INVALID_COMMAND, 8, ANY);

    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, 0, 4, 4, 0, 1.0f, 0.0f, vgpu_f32(&data, 0, 16), vgpu_f32(&data, 16, 16), vgpu_f32(&data, 32, 16));
    st = fvgpu_execute(&gpu, &stream, &fence);
    expect("sgemm with m = 0", st ? st : fvgpu_wait(&gpu, fence), FVGPU_FAULT_INVALID_COMMAND, 8, ANY);

    /* A doorbell naming a tail beyond the ring fails the next entry's guest-state check. */
    *gpu.tail_shadow = 999;
    fvgpu_reg_write(&gpu, FVGPU_DOORBELL, 999);
    fence = 1ull << 62;
    expect("doorbell with a tail beyond the ring", fvgpu_wait(&gpu, fence), FVGPU_FAULT_ENTRY_FAILURE, 45, ANY);
}

int test_fullvgpu_hostile(void)
{
    const char *why = fvgpu_open(&gpu, 0, 64);
    if (why) {
        printf("fullvgpu-hostile: open: %s\n", why);
        return 1;
    }
    /* Faults are expected here; do not wait a minute for a fence that cannot come. */
    gpu.timeout_cycles /= 6;
    if (fvgpu_buf_create(&gpu, &data, 16384) || !vgpu_stream_init(&stream, 4096)) {
        printf("fullvgpu-hostile: out of memory\n");
        return 1;
    }
    readonly_buf = (struct vgpu_buf){ .mem = VGPU_MEM_GUEST, .size = 4096, .ptr = dma_alloc(4096, 4096) };
    readonly_buf.base = readonly_buf.ptr ? fvgpu_map(&gpu, readonly_buf.ptr, 4096, false, false) : 0;
    if (!readonly_buf.base) {
        printf("fullvgpu-hostile: out of memory\n");
        return 1;
    }
    report("a good kernel before any attack", recovers(), "scale");
    setup_cases();
    command_cases();
    report("a good kernel after every attack", recovers(), "scale");
    if (failed)
        printf("fullvgpu-hostile: FAIL (%u of %u cases)\n", failed, passed + failed);
    else
        printf("fullvgpu-hostile: PASS (%u cases)\n", passed);
    return failed ? 1 : 0;
}
