#include "malv/fullvgpu.h"

#include "malv/console.h"
#include "malv/intr.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/system.h"
#include "malv/x86.h"

#define PAGE 4096ull
#define GVA_START 0x1000000000ull           /* GPU addresses start at 64 GiB: never equal to RAM's */
#define DEFAULT_VECTOR 0x68                 /* completion; 0x69 faults */
#define TIMEOUT_CYCLES (60ull * 3000000000ull)  /* ~60 s at 3 GHz, without calibrating */
/* A wait reads STATUS at least this often (~3-10 ms), in case a fault interrupt was lost. */
#define STATUS_CHECK_CYCLES 30000000ull
/* The sleep alarm: ~100 ms at a 1 GHz APIC bus, re-armed when a sleep finds it older than
 * ~2-5 ms (well inside one period at any TSC rate), so a sleeping wait always has one pending. */
#define ALARM_COUNT 6250000u
#define ALARM_REARM_CYCLES 10000000ull

const char *fvgpu_error_name(uint32_t error)
{
    switch (error) {
    case FVGPU_OK: return "ok";
    case FVGPU_ERR_FAULT: return "vGPU fault";
    case FVGPU_ERR_TIMEOUT: return "timed out";
    case FVGPU_ERR_NO_MEMORY: return "out of memory";
    case FVGPU_ERR_BAD_STREAM: return "stream full or empty";
    case FVGPU_ERR_NOT_RUNNING: return "vGPU not running";
    default: return "unknown error";
    }
}

static const struct pci_function *find(unsigned nth)
{
    for (unsigned i = 0; i < pci.count; i++) {
        const struct pci_function *f = &pci.fns[i];
        if (f->vendor == FVGPU_VENDOR && f->device == FVGPU_DEVICE && nth-- == 0)
            return f;
    }
    return NULL;
}

/* ---- GPU page tables ---- */

static uint64_t *table_below(uint64_t *table, unsigned index)
{
    if (!(table[index] & FVGPU_PTE_PRESENT)) {
        uint64_t *next = dma_alloc(PAGE, PAGE);
        if (!next)
            return NULL;
        table[index] = virt_to_phys(next) | FVGPU_PTE_PRESENT | FVGPU_PTE_WRITABLE;
    }
    return (uint64_t *)(uintptr_t)(table[index] & 0x000ffffffffff000ull);
}

bool fvgpu_set_pte(struct fvgpu *g, uint64_t gva, uint64_t pte)
{
    uint64_t *table = g->pml4;
    for (int level = 3; level >= 1 && table; level--)
        table = table_below(table, (unsigned)(gva >> (12 + 9 * level)) & 0x1ff);
    if (!table)
        return false;
    table[(gva >> 12) & 0x1ff] = pte;
    return true;
}

uint64_t fvgpu_reserve(struct fvgpu *g, uint64_t size)
{
    uint64_t gva = g->next_gva;
    /* A guard page between ranges, so an overrun faults instead of reaching a neighbour. */
    g->next_gva += ((size + PAGE - 1) & ~(PAGE - 1)) + PAGE;
    return gva;
}

uint64_t fvgpu_map(struct fvgpu *g, const void *ptr, uint64_t size, bool writable, bool executable)
{
    uint64_t phys = virt_to_phys(ptr), first = phys & ~(PAGE - 1);
    uint64_t pages = (phys + size - first + PAGE - 1) / PAGE;
    uint64_t gva = fvgpu_reserve(g, pages * PAGE);
    for (uint64_t i = 0; i < pages; i++) {
        uint64_t pte = (first + i * PAGE) | FVGPU_PTE_PRESENT | (writable ? FVGPU_PTE_WRITABLE : 0)
                       | (executable ? 0 : FVGPU_PTE_NX);
        if (!fvgpu_set_pte(g, gva + i * PAGE, pte))
            return 0;
    }
    return gva + (phys - first);
}

uint32_t fvgpu_buf_create(struct fvgpu *g, struct vgpu_buf *b, uint64_t size)
{
    *b = (struct vgpu_buf){ .mem = VGPU_MEM_GUEST, .size = size };
    uint64_t bytes = (size + PAGE - 1) & ~(PAGE - 1);
    if (size == 0 || !(b->ptr = dma_alloc(bytes, PAGE)))
        return FVGPU_ERR_NO_MEMORY;
    b->base = fvgpu_map(g, b->ptr, bytes, true, false);
    return b->base ? FVGPU_OK : FVGPU_ERR_NO_MEMORY;
}

/* ---- setup ---- */

static void program(struct fvgpu *g)
{
    fvgpu_reg_write64(g, FVGPU_RING_BASE, g->ring_gva);
    fvgpu_reg_write(g, FVGPU_RING_SIZE, g->ring_size);
    fvgpu_reg_write64(g, FVGPU_PAGE_TABLE_ROOT, virt_to_phys(g->pml4));
    fvgpu_reg_write64(g, FVGPU_COMPLETION_PAGE, virt_to_phys((const void *)g->completion));
    fvgpu_reg_write64(g, FVGPU_TAIL_SHADOW, virt_to_phys((const void *)g->tail_shadow));
}

uint32_t fvgpu_enable(struct fvgpu *g)
{
    g->tail = g->head_seen = 0;
    fvgpu_reg_write(g, FVGPU_CONTROL, FVGPU_CONTROL_ENABLE);
    uint64_t start = rdtsc();
    for (;;) {
        uint32_t status = fvgpu_reg(g, FVGPU_STATUS);
        if (status & FVGPU_STATUS_FAULTED) {
            fvgpu_read_fault(g);
            return FVGPU_ERR_FAULT;
        }
        if (status & FVGPU_STATUS_RUNNING)
            return FVGPU_OK;
        if (rdtsc() - start > g->timeout_cycles)
            return FVGPU_ERR_TIMEOUT;
        cpu_relax();
    }
}

/* Fresh completion page: no fence, nothing pending; ON set while polling, so no completion interrupts. */
static void clear_completion(struct fvgpu *g)
{
    for (unsigned i = 0; i < 4; i++)
        g->completion[i] = 0;
    g->completion[4] = g->poll ? 1 : 0;
    g->completion[5] = 0;
}

uint32_t fvgpu_reset(struct fvgpu *g)
{
    fvgpu_reg_write(g, FVGPU_CONTROL, FVGPU_CONTROL_RESET);
    fvgpu_reg_write(g, FVGPU_INTERRUPT_STATUS, 3);
    g->fault = (struct fvgpu_fault){ 0 };
    g->fault_irqs_seen = irq_count((uint8_t)(g->vector + 1));
    clear_completion(g);
    g->next_fence = 1;
    program(g);
    uint32_t st = fvgpu_enable(g);
    /* Running means the reset was done: nothing of the old ring can post a fence any more. */
    if (st == FVGPU_OK)
        clear_completion(g);
    return st;
}

const char *fvgpu_open(struct fvgpu *g, unsigned nth, uint32_t ring_size)
{
    memset(g, 0, sizeof *g);
    const char *why = pci_init();
    if (why)
        return why;
    g->fn = find(nth);
    if (!g->fn)
        return "no full-vGPU (PCI 1af4:10f0)";
    pci_enable(g->fn);
    g->regs = pci_bar_map(g->fn, 0, 0, 0x1000);
    if (!g->regs)
        return "BAR 0 is not mapped";
    if (fvgpu_reg(g, FVGPU_REG_ID) != FVGPU_ID || fvgpu_reg(g, FVGPU_VERSION) != 1)
        return "not a full-vGPU of version 1 (ID/VERSION)";
    if (ring_size < 2 || ring_size > fvgpu_reg(g, FVGPU_RING_SIZE_MAX) || (ring_size & (ring_size - 1)))
        return "bad ring size";
    why = pci_msix_init(g->fn, &g->msix);
    if (why)
        return why;
    lapic_enable();
    g->vector = DEFAULT_VECTOR;
    if (!pci_msix_set(&g->msix, 0, g->vector, (uint8_t)lapic_id())
        || !pci_msix_set(&g->msix, 1, (uint8_t)(g->vector + 1), (uint8_t)lapic_id()))
        return "MSI-X setup failed";
    pci_msix_enable(&g->msix, true);
    g->timeout_cycles = TIMEOUT_CYCLES;
    g->poll = true;
    g->next_gva = GVA_START;
    g->ring_size = ring_size;
    g->pml4 = dma_alloc(PAGE, PAGE);
    g->ring = dma_alloc((ring_size * 32 + PAGE - 1) & ~(PAGE - 1), PAGE);
    g->completion = dma_alloc(PAGE, PAGE);
    g->tail_shadow = dma_alloc(64, 64);
    if (!g->pml4 || !g->ring || !g->completion || !g->tail_shadow)
        return "out of DMA memory";
    /* The ring is fetched (executed), never written by the GPU. */
    g->ring_gva = fvgpu_map(g, g->ring, ring_size * 32ull, false, true);
    if (!g->ring_gva)
        return "out of DMA memory for page tables";
    /* RESET first: a vGPU left enabled (by an earlier driver) would ignore ENABLE and keep its old registers. */
    uint32_t st = fvgpu_reset(g);
    if (st == FVGPU_ERR_FAULT)
        return "the vGPU faulted on enable (see FAULT_REASON)";
    return st ? fvgpu_error_name(st) : NULL;
}

/* ---- submission ---- */

uint32_t fvgpu_submit(struct fvgpu *g, const uint64_t (*commands)[4], unsigned count)
{
    uint64_t start = rdtsc();
    for (unsigned i = 0; i < count; i++) {
        uint32_t next = (g->tail + 1) & (g->ring_size - 1);
        while (next == g->head_seen) {
            /* The ring looks full: read where the GPU is, as a real driver reads GET. */
            g->head_reads++;
            g->head_seen = fvgpu_reg(g, FVGPU_RING_HEAD);
            if (next != g->head_seen)
                break;
            if (fvgpu_reg(g, FVGPU_STATUS) & FVGPU_STATUS_FAULTED) {
                fvgpu_read_fault(g);
                return FVGPU_ERR_FAULT;
            }
            if (rdtsc() - start > g->timeout_cycles)
                return FVGPU_ERR_TIMEOUT;
            cpu_relax();
        }
        memcpy(g->ring[g->tail], commands[i], 32);
        g->tail = next;
    }
    /* Commands, then the tail shadow (with an ioeventfd doorbell the device reads the tail there),
     * then the doorbell; x86 keeps the stores in order, the barriers keep the compiler from moving them. */
    __asm__ volatile("" ::: "memory");
    *g->tail_shadow = g->tail;
    __asm__ volatile("" ::: "memory");
    fvgpu_reg_write(g, FVGPU_DOORBELL, g->tail);
    return FVGPU_OK;
}

/*
 * A stream's memory is mapped once, read-only, the first time it is executed
 * here: vgpu_stream_init allocates `data` once (dma_alloc, never moved or
 * freed) and zeroes the record of the mapping; the record names these page
 * tables, so a stream used with another full-vGPU (or after fvgpu_open again)
 * is mapped anew.
 */
static uint64_t stream_address(struct fvgpu *g, struct vgpu_stream *s)
{
    if (s->gpu_tables != g->pml4 || !s->gpu_address) {
        s->gpu_address = fvgpu_map(g, s->data, s->cap, false, false);
        s->gpu_tables = s->gpu_address ? g->pml4 : NULL;
    }
    return s->gpu_address;
}

uint32_t fvgpu_fence(struct fvgpu *g, uint64_t *fence)
{
    *fence = g->next_fence++;
    const uint64_t command[1][4] = { { FVGPU_FENCE, *fence, 0, 0 } };
    return fvgpu_submit(g, command, 1);
}

uint32_t fvgpu_execute(struct fvgpu *g, struct vgpu_stream *s, uint64_t *fence)
{
    if (!vgpu_stream_finish(s))
        return FVGPU_ERR_BAD_STREAM;
    uint64_t gva = stream_address(g, s);
    if (!gva)
        return FVGPU_ERR_NO_MEMORY;
    *fence = g->next_fence++;
    const uint64_t commands[2][4] = {
        { FVGPU_EXECUTE, gva, s->len, 0 },
        { FVGPU_FENCE, *fence, 0, 0 },
    };
    return fvgpu_submit(g, commands, 2);
}

bool fvgpu_done(const struct fvgpu *g, uint64_t fence)
{
    return g->completion[5] >= fence;
}

/* Whether the vGPU has stopped with a fault (then g->fault holds the FAULT_* registers). */
static bool faulted(struct fvgpu *g)
{
    g->status_reads++;
    if (!(fvgpu_reg(g, FVGPU_STATUS) & FVGPU_STATUS_FAULTED))
        return false;
    fvgpu_read_fault(g);
    return true;
}

uint32_t fvgpu_wait(struct fvgpu *g, uint64_t fence)
{
    if (fvgpu_done(g, fence))
        return FVGPU_OK;
    uint8_t fault_vector = (uint8_t)(g->vector + 1);
    uint64_t start = rdtsc(), status_checked = start;
    for (;;) {
        uint64_t seen = irq_count(g->vector);
        if (fvgpu_done(g, fence))
            return FVGPU_OK;
        uint64_t now = rdtsc();
        /* The fault interrupt says when to look at STATUS; a slow periodic look covers a lost one. */
        if (irq_count(fault_vector) != g->fault_irqs_seen || now - status_checked > STATUS_CHECK_CYCLES) {
            g->fault_irqs_seen = irq_count(fault_vector);
            status_checked = now;
            if (faulted(g))
                return fvgpu_done(g, fence) ? FVGPU_OK : FVGPU_ERR_FAULT;
        }
        if (now - start > g->timeout_cycles)
            return fvgpu_done(g, fence) ? FVGPU_OK : FVGPU_ERR_TIMEOUT;
        if (g->poll) {
            cpu_relax();
            continue;
        }
        /* Re-arm the posted-completion notification (vector 0 handled, ON clear), then look again:
         * a fence posted after this raises the interrupt, which the sleep below does not miss. */
        __atomic_fetch_and(&g->completion[0], ~1ull, __ATOMIC_SEQ_CST);
        g->completion[4] = 0;
        __asm__ volatile("mfence" ::: "memory");
        if (fvgpu_done(g, fence))
            return FVGPU_OK;
        if (now - g->alarm_armed_at > ALARM_REARM_CYCLES) {
            lapic_timer_oneshot((uint8_t)(g->vector + 2), ALARM_COUNT);
            g->alarm_armed_at = rdtsc();
        }
        g->sleeps++;
        cpu_wait_for_interrupt(g->vector, seen);
    }
}

uint32_t fvgpu_run(struct fvgpu *g, struct vgpu_stream *s)
{
    uint64_t fence;
    uint32_t st = fvgpu_execute(g, s, &fence);
    return st ? st : fvgpu_wait(g, fence);
}

/* ---- faults ---- */

void fvgpu_read_fault(struct fvgpu *g)
{
    g->fault = (struct fvgpu_fault){
        .status = fvgpu_reg(g, FVGPU_STATUS),
        .reason = fvgpu_reg(g, FVGPU_FAULT_REASON),
        .qualification = fvgpu_reg(g, FVGPU_FAULT_QUAL),
        .command = fvgpu_reg(g, FVGPU_FAULT_COMMAND),
        .offset = fvgpu_reg(g, FVGPU_FAULT_OFFSET),
        .address = fvgpu_reg(g, FVGPU_FAULT_ADDRESS) | (uint64_t)fvgpu_reg(g, FVGPU_FAULT_ADDRESS + 4) << 32,
    };
}

void fvgpu_print_fault(const char *program, const struct fvgpu *g)
{
    printf("%s: vGPU fault: reason 0x%x qualification 0x%x address 0x%llx command %u offset %u\n", program,
           g->fault.reason, g->fault.qualification, (unsigned long long)g->fault.address, g->fault.command,
           g->fault.offset);
}
