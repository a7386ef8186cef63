/*
 * test=hotplug: PCIe native hot-plug of a vGPU, as the guest side of
 * malvvm's Machine.hotplugVirtioDevice / hotUnplug (and QEMU's device_add /
 * device_del on a pcie-root-port).
 *
 * For every PCIe root port with a hot-plug capable slot: number its
 * secondary bus, open a 2 MiB memory window for it, route its hot-plug MSI
 * to HP_VECTOR, clear stale events, power an empty slot off and enable the
 * attention button, presence, link-state, command-completed and hot-plug
 * interrupts. Then, for each of `hotplug_cycles=N` (default 1) cycles:
 *
 *   wait for a card (presence detect), power the slot on, wait for the link,
 *   probe bus:00.0, place its BARs inside the port's window, open it as a
 *   vGPU (MSI-X; a para-vGPU or a full-vGPU, whichever came), run sgemm +
 *   relu against the CPU's result, then wait for the attention button,
 *   reset the device (virtio status 0, or CONTROL.RESET), turn slot
 *   power off and wait for the card to go (presence clear, 00.0 reads
 *   0xffff).
 *
 * Every wait is bounded (`hotplug_timeout_ms=N`, default 60000, counted in
 * PIT ticks at 100 Hz while the vCPU sleeps between interrupts): a timeout
 * prints `hotplug: FAIL ...` and exits 1. `hotplug_release=ignore` ignores
 * the button and waits for a surprise removal instead (the VMM's forced
 * detach). `hotplug_compute=off` skips the vGPU part (any device will do:
 * QEMU's virtio-gpu has no compute capset).
 *
 * Lines the host can wait for: `hotplug: waiting for a device` and
 * `hotplug: vgpu in use`. Last line `hotplug: PASS (N cycles)`.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/format.h"
#include "malv/fullvgpu.h"
#include "malv/intr.h"
#include "malv/pci.h"
#include "malv/pit.h"
#include "malv/string.h"
#include "malv/system.h"
#include "malv/test.h"
#include "malv/vgpu.h"
#include "malv/x86.h"

#define HP_VECTOR   0x70
#define TICK_VECTOR 0x71
#define TICK_HZ     100
#define VGPU_VECTOR 0x60
#define MAX_PORTS   16
#define PORT_WINDOW (2ull << 20)

/* PCI Express capability registers (from the capability) and bits. */
#define EXP_FLAGS   0x02
#define EXP_LNKSTA  0x12
#define EXP_SLTCAP  0x14
#define EXP_SLTCTL  0x18
#define EXP_SLTSTA  0x1a

#define LNKSTA_DLLLA (1u << 13)

#define SLTCAP_ABP  0x1u
#define SLTCAP_PCP  0x2u
#define SLTCAP_AIP  0x8u
#define SLTCAP_PIP  0x10u
#define SLTCAP_HPS  0x20u
#define SLTCAP_HPC  0x40u
#define SLTCAP_NCCS 0x40000u

#define SLTCTL_ABPE   0x1u
#define SLTCTL_PDCE   0x8u
#define SLTCTL_CCIE   0x10u
#define SLTCTL_HPIE   0x20u
#define SLTCTL_AIC_OFF 0xc0u
#define SLTCTL_PIC_ON  0x100u
#define SLTCTL_PIC_OFF 0x300u
#define SLTCTL_PCC_OFF 0x400u
#define SLTCTL_DLLSCE  0x1000u

#define SLTSTA_ABP   0x1u
#define SLTSTA_PDC   0x8u
#define SLTSTA_CC    0x10u
#define SLTSTA_PDS   0x40u
#define SLTSTA_DLLSC 0x100u
#define SLTSTA_EVENTS 0x11fu

struct hp_port {
    unsigned fn;            /* index in pci.fns: ports come before anything we append */
    unsigned exp;           /* PCIe capability offset */
    unsigned slot;          /* physical slot number */
    uint32_t caps;
    uint16_t events;        /* events seen and cleared, not yet consumed */
};

static struct hp_port ports[MAX_PORTS];
static unsigned port_count;
static unsigned timeout_ms = 60000;
static bool compute = true, ignore_button = false;
static struct vgpu gpu;
static struct vgpu_ctx ctx;
static struct fvgpu fgpu;
static bool full_kind;       /* the card is a full-vGPU (docs/fullvgpu.md) */
static struct vgpu_buf bufs[3];
static struct vgpu_stream stream;

static struct pci_function *pfn(struct hp_port *p) { return &pci.fns[p->fn]; }
static uint16_t sltsta(struct hp_port *p) { return pci_read16(pfn(p), p->exp + EXP_SLTSTA); }
static uint16_t sltctl(struct hp_port *p) { return pci_read16(pfn(p), p->exp + EXP_SLTCTL); }

static int fail(const char *what)
{
    printf("hotplug: FAIL %s\n", what);
    return EXIT_FAILED;
}

/*
 * Takes the port's events and clears them (write 1 to clear). With MSI the
 * port only interrupts again once every enabled event is clear, so read
 * again until nothing is left (as Linux's pciehp_isr does).
 */
static void collect(struct hp_port *p)
{
    for (unsigned i = 0; i < 16; i++) {
        uint16_t ev = sltsta(p) & SLTSTA_EVENTS;
        if (!ev)
            return;
        pci_write16(pfn(p), p->exp + EXP_SLTSTA, ev);
        p->events |= ev;
    }
}

typedef bool (*port_pred)(struct hp_port *p);

/*
 * Sleeps between interrupts (the port's MSI or the PIT tick) until `pred`
 * holds for `only` (or any port if NULL) or the timeout passes.
 */
static struct hp_port *wait_for(port_pred pred, struct hp_port *only, unsigned ms)
{
    uint64_t start = irq_count(TICK_VECTOR), ticks = (uint64_t)ms * TICK_HZ / 1000 + 1;
    for (;;) {
        uint64_t seen = irq_count(HP_VECTOR);
        for (unsigned i = 0; i < port_count; i++) {
            struct hp_port *p = &ports[i];
            if (only && p != only)
                continue;
            collect(p);
            if (pred(p))
                return p;
        }
        if (irq_count(TICK_VECTOR) - start > ticks)
            return NULL;
        cpu_wait_for_interrupt(HP_VECTOR, seen);
    }
}

static bool occupied(struct hp_port *p) { return sltsta(p) & SLTSTA_PDS; }
static bool empty(struct hp_port *p) { return !(sltsta(p) & SLTSTA_PDS); }
static bool command_done(struct hp_port *p) { return p->events & SLTSTA_CC; }
static bool button_or_gone(struct hp_port *p) { return (p->events & SLTSTA_ABP) || empty(p); }
static bool link_up(struct hp_port *p) { return pci_read16(pfn(p), p->exp + EXP_LNKSTA) & LNKSTA_DLLLA; }

/* A Slot Control write is a command: wait for Command Completed unless the port has none. */
static bool slot_command(struct hp_port *p, uint16_t value)
{
    p->events &= ~SLTSTA_CC;
    pci_write16(pfn(p), p->exp + EXP_SLTCTL, value);
    if (p->caps & SLTCAP_NCCS)
        return true;
    bool ok = wait_for(command_done, p, 1000) != NULL;
    p->events &= ~SLTSTA_CC;
    return ok;
}

static uint16_t control(bool power)
{
    return SLTCTL_ABPE | SLTCTL_PDCE | SLTCTL_CCIE | SLTCTL_HPIE | SLTCTL_DLLSCE | SLTCTL_AIC_OFF |
           (power ? SLTCTL_PIC_ON : SLTCTL_PIC_OFF | SLTCTL_PCC_OFF);
}

/* ---- set-up ---- */

static uint8_t highest_bus(void)
{
    uint8_t top = 0;
    for (unsigned i = 0; i < pci.count; i++) {
        const struct pci_function *f = &pci.fns[i];
        if (f->bus > top)
            top = f->bus;
        if (f->header_type == 1 && f->subordinate_bus > top)
            top = f->subordinate_bus;
    }
    return top;
}

static int find_ports(void)
{
    for (unsigned i = 0; i < pci.count && port_count < MAX_PORTS; i++) {
        const struct pci_function *f = &pci.fns[i];
        const struct pci_cap *cap = pci_find_cap(f, PCI_CAP_PCIE);
        if (f->header_type != 1 || !cap)
            continue;
        uint16_t flags = pci_read16(f, cap->offset + EXP_FLAGS);
        uint32_t caps = pci_read32(f, cap->offset + EXP_SLTCAP);
        /* Root port (4) or downstream port (6), with a slot that is hot-plug capable. */
        unsigned type = (flags >> 4) & 0xf;
        if ((type != 4 && type != 6) || !(flags & 0x100) || !(caps & SLTCAP_HPC))
            continue;
        ports[port_count++] = (struct hp_port){ .fn = i, .exp = cap->offset, .slot = caps >> 19, .caps = caps };
    }
    return (int)port_count;
}

static const char *set_up_port(struct hp_port *p, uint8_t bus)
{
    struct pci_function *f = pfn(p);
    if (!pci_bridge_set_buses(f, f->bus, bus, bus))
        return "bus numbers did not stick";
    uint64_t base = pci_window_alloc(&pci.window, PORT_WINDOW);
    if (!base || !pci_bridge_set_window(f, base, PORT_WINDOW))
        return "cannot open a memory window";
    pci_write16(f, PCI_COMMAND, pci_read16(f, PCI_COMMAND) | PCI_CMD_MEMORY | PCI_CMD_MASTER | PCI_CMD_INTX_OFF);
    const char *why = pci_msi_enable(f, HP_VECTOR, (uint8_t)lapic_id());
    if (why)
        return why;
    /* Events from before we looked are stale: the state bits say what is true now. */
    pci_write16(f, p->exp + EXP_SLTSTA, SLTSTA_EVENTS);
    p->events = 0;
    bool present = occupied(p);
    bool powered = !(sltctl(p) & SLTCTL_PCC_OFF);
    if (!slot_command(p, control(present && powered)))
        return "no command completed for the first Slot Control write";
    printf("hotplug: port %02x:%02x.%x slot %u -> bus %02x, window 0x%llx-0x%llx, MSI 0x%x; caps%s%s%s%s%s; %s\n",
           f->bus, f->dev, f->fn, p->slot, bus, (unsigned long long)f->mem_window_base,
           (unsigned long long)f->mem_window_end - 1, HP_VECTOR, p->caps & SLTCAP_ABP ? " button" : "",
           p->caps & SLTCAP_PCP ? " power" : "", p->caps & SLTCAP_AIP ? " attn-led" : "",
           p->caps & SLTCAP_PIP ? " power-led" : "", p->caps & SLTCAP_HPS ? " surprise" : "",
           present ? "occupied" : "empty, powered off");
    return NULL;
}

/* ---- the device ---- */

static void result_line(const char *what, bool ok, double err)
{
    char detail[64];
    snprintf(detail, sizeof detail, "max err %.1e", err);
    printf("hotplug: vgpu %s ... %s (%s)\n", what, ok ? "ok" : "FAILED", detail);
}

/* C = relu(A B) on the vGPU against the CPU. */
static const char *use_vgpu(unsigned cycle, const struct pci_function *f)
{
    enum { M = 16, N = 24, K = 32 };
    uint64_t sizes[3] = { M * K * 4, K * N * 4, M * N * 4 };
    uint32_t st;
    full_kind = f->vendor == FVGPU_VENDOR && f->device == FVGPU_DEVICE;
    if (full_kind) {
        const char *why = fvgpu_open(&fgpu, 0, 16);
        if (why)
            return why;
        printf("hotplug: vgpu open: full-vGPU\n");
        for (unsigned i = 0; i < 3; i++)
            if ((st = fvgpu_buf_create(&fgpu, &bufs[i], sizes[i])))
                return fvgpu_error_name(st);
    } else {
        const char *why = vgpu_open_msix(&gpu, 0, VGPU_VECTOR);
        if (why)
            return why;
        const struct virtio_gpu_compute_capset *cs = vgpu_capset(&gpu);
        printf("hotplug: vgpu open: backend %s, %llu MiB, max %u commands\n", cs->backend ? "vulkan" : "cpu",
               (unsigned long long)(cs->memory_bytes >> 20), cs->max_commands);
        if ((st = vgpu_ctx_create(&gpu, &ctx, "hotplug", 0)))
            return vgpu_status_name(st);
        for (unsigned i = 0; i < 3; i++)
            if ((st = vgpu_buf_create(&ctx, &bufs[i], sizes[i], VGPU_MEM_GUEST)))
                return vgpu_status_name(st);
    }
    float *a = vgpu_f32p(&bufs[0]), *b = vgpu_f32p(&bufs[1]), *c = vgpu_f32p(&bufs[2]);
    uint32_t seed = 12345 + cycle;
    for (unsigned i = 0; i < M * K; i++)
        a[i] = (float)((int)((seed = seed * 1103515245 + 12345) >> 16 & 0xff) - 128) / 64.0f;
    for (unsigned i = 0; i < K * N; i++)
        b[i] = (float)((int)((seed = seed * 1103515245 + 12345) >> 16 & 0xff) - 128) / 64.0f;
    for (unsigned i = 0; i < M * N; i++)
        c[i] = -1e30f;
    if (!stream.data && !vgpu_stream_init(&stream, 4096))
        return "out of memory for the command stream";
    vgpu_stream_reset(&stream);
    vgpu_sgemm(&stream, M, N, K, 0, 1.0f, 0.0f, vgpu_f32(&bufs[0], 0, M * K), vgpu_f32(&bufs[1], 0, K * N),
               vgpu_f32(&bufs[2], 0, M * N));
    vgpu_relu(&stream, M * N, vgpu_f32(&bufs[2], 0, M * N), vgpu_f32(&bufs[2], 0, M * N));
    if (full_kind ? (st = fvgpu_run(&fgpu, &stream)) != 0 : (st = vgpu_run(&ctx, &stream)) != 0)
        return full_kind ? fvgpu_error_name(st) : vgpu_status_name(st);
    double worst = 0;
    for (unsigned i = 0; i < M; i++)
        for (unsigned j = 0; j < N; j++) {
            double want = 0;
            for (unsigned k = 0; k < K; k++)
                want += (double)a[i * K + k] * b[k * N + j];
            if (want < 0)
                want = 0;
            double got = c[i * N + j], d = got > want ? got - want : want - got;
            d /= want > 1 ? want : 1;
            if (!(d <= worst))
                worst = d;   /* NaN too */
        }
    bool ok = worst <= 1e-4;
    result_line("sgemm 16x24x32 + relu", ok, worst);
    return ok ? NULL : "vGPU result differs from the CPU's";
}

/* ---- one attach/detach cycle ---- */

static int cycle(unsigned n)
{
    printf("hotplug: waiting for a device (cycle %u, timeout %u ms)\n", n, timeout_ms);
    struct hp_port *p = wait_for(occupied, NULL, timeout_ms);
    if (!p)
        return fail("timed out waiting for presence detect");
    struct pci_function *port = pfn(p);
    printf("hotplug: slot %u: card present (events%s%s)\n", p->slot, p->events & SLTSTA_PDC ? " PDC" : "",
           p->events & SLTSTA_DLLSC ? " DLLSC" : "");
    p->events = 0;
    if (!slot_command(p, control(true)))
        return fail("no command completed for power on");
    if (!wait_for(link_up, p, 1000))
        return fail("link did not come up after power on");

    uint8_t bus = port->secondary_bus;
    struct pci_function *f = pci_probe(bus, 0);
    if (!f)
        return fail("nothing answers at 00.0 behind the port");
    printf("hotplug: %02x:00.0 %04x:%04x class %02x:%02x %s\n", bus, f->vendor, f->device, f->class_code,
           f->subclass, pci_class_name(f->class_code, f->subclass));
    for (unsigned i = 0; i < f->bar_count; i++) {
        const struct pci_bar *b = &f->bars[i];
        if (b->kind == PCI_BAR_MEM32 || b->kind == PCI_BAR_MEM64)
            printf("hotplug: bar%u 0x%llx size 0x%llx (%s)\n", i, (unsigned long long)b->addr,
                   (unsigned long long)b->size,
                   !b->addr ? "unassigned"
                   : b->addr >= port->mem_window_base && b->addr + b->size <= port->mem_window_end
                       ? "inside the port's window"
                       : "outside the port's window");
    }
    if (!pci_assign_bars_in(f, port))
        return fail("BARs do not fit the port's window");
    for (unsigned i = 0; i < f->bar_count; i++)
        if (f->bars[i].assigned_by_guest)
            printf("hotplug: bar%u placed at 0x%llx\n", i, (unsigned long long)f->bars[i].addr);

    if (compute) {
        const char *why = use_vgpu(n, f);
        if (why) {
            printf("hotplug: FAIL vgpu: %s\n", why);
            return EXIT_FAILED;
        }
    }
    printf("hotplug: vgpu in use on slot %u; %s\n", p->slot,
           ignore_button ? "ignoring the attention button" : "waiting for the attention button");

    p->events = 0;
    struct hp_port *q = wait_for(ignore_button ? empty : button_or_gone, p, timeout_ms);
    if (!q)
        return fail(ignore_button ? "timed out waiting for a surprise removal" : "timed out waiting for the attention button");
    if (empty(p)) {
        printf("hotplug: slot %u: surprise removal (the device went without asking)\n", p->slot);
        if (!slot_command(p, control(false)))
            return fail("no command completed for power off");
    } else {
        printf("hotplug: slot %u: attention button pressed; releasing the device\n", p->slot);
        if (compute && full_kind) {
            fvgpu_reg_write(&fgpu, FVGPU_CONTROL, FVGPU_CONTROL_RESET);
            pci_msix_enable(&fgpu.msix, false);
        } else if (compute) {
            struct virtio_pci *vp = &gpu.dev.vp;
            if (!virtio_pci_reset(vp))
                return fail("device did not finish reset");
            pci_msix_enable(&vp->msix, false);
        }
        pci_write16(f, PCI_COMMAND, 0);
        if (!slot_command(p, control(false)))
            return fail("no command completed for power off");
        printf("hotplug: slot %u powered off\n", p->slot);
        if (!wait_for(empty, p, timeout_ms))
            return fail("timed out waiting for the card to go after power off");
    }
    pci_forget(f);
    struct pci_function probe = { .bus = bus, .dev = 0 };
    uint16_t vendor = pci_read16(&probe, PCI_VENDOR_ID);
    printf("hotplug: slot %u empty (events%s%s); %02x:00.0 vendor reads 0x%04x\n", p->slot,
           p->events & SLTSTA_PDC ? " PDC" : "", p->events & SLTSTA_DLLSC ? " DLLSC" : "", bus, vendor);
    p->events = 0;
    if (vendor != 0xffff)
        return fail("the removed device still answers");
    return 0;
}

int test_hotplug(void)
{
    char arg[32];
    uint64_t v;
    const char *end;
    unsigned cycles = 1;
    if (cmdline_get("hotplug_cycles", arg, sizeof arg) && parse_u64(arg, &v, &end) && !*end && v >= 1 && v <= 16)
        cycles = (unsigned)v;
    if (cmdline_get("hotplug_timeout_ms", arg, sizeof arg) && parse_u64(arg, &v, &end) && !*end && v >= 10 &&
        v <= 3600000)
        timeout_ms = (unsigned)v;
    if (cmdline_get("hotplug_release", arg, sizeof arg) && strcmp(arg, "ignore") == 0)
        ignore_button = true;
    if (cmdline_get("hotplug_compute", arg, sizeof arg) && strcmp(arg, "off") == 0)
        compute = false;

    const char *why = pci_init();
    if (why)
        return fail(why);
    if (find_ports() == 0)
        return fail("no PCIe port with a hot-plug slot");

    /* The clock for every timeout: the PIT at 100 Hz on IOAPIC pin 2. */
    lapic_enable();
    ioapic_route(PIT_IOAPIC_PIN, TICK_VECTOR, (uint8_t)lapic_id());
    pit_start_periodic(TICK_HZ);
    if (!irq_wait(TICK_VECTOR, 2, 1ull << 34))
        return fail("no timer ticks (PIT on IOAPIC pin 2)");

    uint8_t bus = highest_bus();
    for (unsigned i = 0; i < port_count; i++) {
        if (bus == 0xff)
            return fail("out of bus numbers");
        why = set_up_port(&ports[i], ++bus);
        if (why) {
            printf("hotplug: FAIL port %u: %s\n", i, why);
            return EXIT_FAILED;
        }
    }
    for (unsigned n = 1; n <= cycles; n++) {
        int rc = cycle(n);
        if (rc)
            return rc;
    }
    pit_stop();
    ioapic_mask(PIT_IOAPIC_PIN);
    printf("hotplug: PASS (%u cycle%s)\n", cycles, cycles == 1 ? "" : "s");
    return 0;
}
