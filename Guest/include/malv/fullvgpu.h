/*
 * The full-vGPU driver (docs/fullvgpu.md): a GPU whose virtualisation is the
 * G-VMCS model. The guest owns a command ring and 4-level GPU page tables;
 * kernels are the para-vGPU's compute stream records (vgpu.h), whose buffer
 * references name GPU virtual addresses: a vgpu_buf made here has id 0 and
 * `base` = its GPU address, so vgpu_f32(&buf, first, n) and every recording
 * helper of vgpu.h work unchanged.
 *
 *   struct fvgpu g;          fvgpu_open(&g, 0, ring_slots)
 *   struct vgpu_buf b;       fvgpu_buf_create(&g, &b, bytes)   (guest memory, mapped)
 *   struct vgpu_stream s;    vgpu_stream_init(&s, cap); vgpu_scale(&s, ...)
 *   uint64_t f;              fvgpu_execute(&g, &s, &f); fvgpu_wait(&g, f)
 *
 * Every call returns 0 or an FVGPU_ERR_* code; after FVGPU_ERR_FAULT the
 * FAULT_* registers are in g.fault (fvgpu_read_fault) until fvgpu_reset.
 *
 * Waits poll the completion page by default; with g.poll = false they sleep
 * (cpu_wait_for_interrupt) until MSI-X vector 0 (g.vector) fires, re-arming
 * the completion page's ON bit first. Either way a wait ends with
 * FVGPU_ERR_FAULT when the vGPU stops (the fault vector g.vector + 1 fired,
 * or STATUS says faulted: looked at every few ms) and with FVGPU_ERR_TIMEOUT
 * after g.timeout_cycles; a sleeping wait keeps a LAPIC one-shot alarm
 * (vector g.vector + 2) armed so a lost interrupt cannot hang it.
 */
#ifndef MALV_FULLVGPU_H
#define MALV_FULLVGPU_H

#include <stdbool.h>
#include <stdint.h>

#include "malv/pci.h"
#include "malv/vgpu.h"

#define FVGPU_VENDOR 0x1af4
#define FVGPU_DEVICE 0x10f0
#define FVGPU_ID 0x4746564du

/* Registers (BAR 0) */
#define FVGPU_DOORBELL          0x000
#define FVGPU_RING_HEAD         0x004
#define FVGPU_RING_TAIL         0x008
#define FVGPU_STATUS            0x00c
#define FVGPU_REG_ID            0x100
#define FVGPU_VERSION           0x104
#define FVGPU_RING_SIZE_MAX     0x108
#define FVGPU_OPCODE_MASK       0x10c
#define FVGPU_RING_BASE         0x110
#define FVGPU_RING_SIZE         0x118
#define FVGPU_PAGE_TABLE_ROOT   0x120
#define FVGPU_COMPLETION_PAGE   0x128
#define FVGPU_TAIL_SHADOW       0x130
#define FVGPU_CONTROL           0x140
#define FVGPU_INTERRUPT_STATUS  0x144
#define FVGPU_FAULT_REASON      0x148
#define FVGPU_FAULT_QUAL        0x14c
#define FVGPU_FAULT_ADDRESS     0x150
#define FVGPU_FAULT_COMMAND     0x158
#define FVGPU_FAULT_OFFSET      0x15c
#define FVGPU_COMPLETED_FENCE   0x160

#define FVGPU_STATUS_RUNNING 1u
#define FVGPU_STATUS_FAULTED 2u
#define FVGPU_CONTROL_ENABLE 1u
#define FVGPU_CONTROL_RESET  2u

/* Ring commands (docs/gvmcs.md "Command format") */
enum fvgpu_opcode { FVGPU_NOP = 0, FVGPU_WRITE64 = 1, FVGPU_FENCE = 2, FVGPU_DISPATCH = 3, FVGPU_EXECUTE = 4 };
#define FVGPU_KERNEL_COPY 1u
/* Kernel records in one stream (the para-vGPU's compute stream limit). */
#define FVGPU_MAX_STREAM_COMMANDS 4096u

/* Fault reasons (FAULT_REASON) */
#define FVGPU_FAULT_GEPT_VIOLATION   3u
#define FVGPU_FAULT_GEPT_MISCONFIG   4u
#define FVGPU_FAULT_INVALID_COMMAND  7u
#define FVGPU_FAULT_PAGE_FAULT       8u
#define FVGPU_FAULT_ENTRY_FAILURE    0x80000021u
#define FVGPU_FAULT_COMPLETION_PAGE  0x100u
#define FVGPU_FAULT_TAIL_SHADOW      0x101u
#define FVGPU_FAULT_GPU_ERROR        0x102u

/* GPU page-table entry bits */
#define FVGPU_PTE_PRESENT  (1ull << 0)
#define FVGPU_PTE_WRITABLE (1ull << 1)
#define FVGPU_PTE_NX       (1ull << 63)

enum fvgpu_error {
    FVGPU_OK = 0,
    FVGPU_ERR_FAULT = 1,        /* the vGPU stopped: see g->fault */
    FVGPU_ERR_TIMEOUT = 2,
    FVGPU_ERR_NO_MEMORY = 3,
    FVGPU_ERR_BAD_STREAM = 4,   /* full or empty stream: nothing sent */
    FVGPU_ERR_NOT_RUNNING = 5,
};

struct fvgpu_fault {
    uint32_t status, reason, qualification, command, offset;
    uint64_t address;
};

struct fvgpu {
    const struct pci_function *fn;
    volatile uint8_t *regs;
    struct pci_msix msix;
    uint8_t vector;                 /* completion; vector + 1: fault; vector + 2: the sleep alarm */
    uint64_t fault_irqs_seen;
    uint64_t *pml4;                 /* GPU page tables (guest memory) */
    uint64_t next_gva;
    uint64_t (*ring)[4];
    uint64_t ring_gva;              /* the ring's GPU address (mapped once, executable, read-only) */
    uint32_t ring_size, tail, head_seen;
    volatile uint64_t *completion;  /* the completion page */
    volatile uint32_t *tail_shadow;
    uint64_t next_fence;
    uint64_t timeout_cycles;
    bool poll;                      /* fvgpu_wait spins (default) instead of sleeping on the completion interrupt */
    uint64_t head_reads;            /* RING_HEAD reads made to reclaim ring space */
    uint64_t sleeps;                /* cpu_wait_for_interrupt calls */
    uint64_t status_reads;          /* STATUS reads made by waits (fault checks) */
    uint64_t alarm_armed_at;        /* TSC when the sleep alarm was last armed */
    struct fvgpu_fault fault;
};

/* Finds the nth full-vGPU (PCI 1af4:10f0), maps BAR 0 and the MSI-X table (BAR 2), checks ID and VERSION,
 * sets up page tables, ring (ring_size slots, a power of two), completion page and tail shadow, enables it.
 * NULL on success, else why not. */
const char *fvgpu_open(struct fvgpu *g, unsigned nth, uint32_t ring_size);
const char *fvgpu_error_name(uint32_t error);

static inline uint32_t fvgpu_reg(const struct fvgpu *g, unsigned off)
{
    return *(volatile uint32_t *)(g->regs + off);
}
static inline void fvgpu_reg_write(struct fvgpu *g, unsigned off, uint32_t v)
{
    *(volatile uint32_t *)(g->regs + off) = v;
}
static inline void fvgpu_reg_write64(struct fvgpu *g, unsigned off, uint64_t v)
{
    fvgpu_reg_write(g, off, (uint32_t)v);
    fvgpu_reg_write(g, off + 4, (uint32_t)(v >> 32));
}

/* Maps [ptr, ptr + size) (guest memory) at fresh GPU addresses (from 64 GiB up, a guard page after each range);
 * returns the GPU address of ptr, 0 when out of memory. Not writable / executable: read-only / no-execute. */
uint64_t fvgpu_map(struct fvgpu *g, const void *ptr, uint64_t size, bool writable, bool executable);
/* Writes a raw page-table leaf for the page holding gva (for hostile tests); false when out of memory. */
bool fvgpu_set_pte(struct fvgpu *g, uint64_t gva, uint64_t pte);
/* A fresh, unmapped GPU address range of `size` bytes (for hostile tests). */
uint64_t fvgpu_reserve(struct fvgpu *g, uint64_t size);

/* A buffer in guest memory mapped read/write; as a vgpu_buf (id 0, base = GPU address). */
uint32_t fvgpu_buf_create(struct fvgpu *g, struct vgpu_buf *b, uint64_t size);

/* Puts 32-byte commands on the ring (waiting for space: RING_HEAD is read only when the ring looks full),
 * stores the new tail at TAIL_SHADOW, then rings the doorbell once. */
uint32_t fvgpu_submit(struct fvgpu *g, const uint64_t (*commands)[4], unsigned count);
/* Finishes the stream's header, maps its memory (once per stream and page-table set), submits
 * execute(stream) + fence; *fence is the value to wait for. */
uint32_t fvgpu_execute(struct fvgpu *g, struct vgpu_stream *s, uint64_t *fence);
/* A fence command on its own (everything before it done). */
uint32_t fvgpu_fence(struct fvgpu *g, uint64_t *fence);
/* Waits for the completion page to reach `fence`; FVGPU_ERR_FAULT if the vGPU stops. */
uint32_t fvgpu_wait(struct fvgpu *g, uint64_t fence);
/* Whether the completion page has reached `fence` (never waits). */
bool fvgpu_done(const struct fvgpu *g, uint64_t fence);
/* submit execute + wait */
uint32_t fvgpu_run(struct fvgpu *g, struct vgpu_stream *s);

/* Reads STATUS and the FAULT_* registers into g->fault. */
void fvgpu_read_fault(struct fvgpu *g);
void fvgpu_print_fault(const char *program, const struct fvgpu *g);
/* CONTROL = RESET, then re-programs the registers and enables again (head and tail restart at 0). */
uint32_t fvgpu_reset(struct fvgpu *g);
/* Writes CONTROL = ENABLE and waits for STATUS running or faulted; 0 when running. */
uint32_t fvgpu_enable(struct fvgpu *g);

#endif
