#define _GNU_SOURCE
#include "ckvm.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/eventfd.h>
#include <sys/vfs.h>
#include <linux/magic.h>
#include <fcntl.h>

#define CKVM_IOCTL(fd, request, arg) \
    do { int r_ = ioctl((fd), (request), (arg)); return r_ < 0 ? -errno : r_; } while (0)

int ckvm_get_api_version(int kvm_fd) { CKVM_IOCTL(kvm_fd, KVM_GET_API_VERSION, 0); }
int ckvm_check_extension(int fd, int capability) { CKVM_IOCTL(fd, KVM_CHECK_EXTENSION, capability); }
int ckvm_create_vm(int kvm_fd, unsigned long machine_type) { CKVM_IOCTL(kvm_fd, KVM_CREATE_VM, machine_type); }
int ckvm_get_vcpu_mmap_size(int kvm_fd) { CKVM_IOCTL(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0); }

// struct kvm_cpuid2 ends in a flexible array, which Swift cannot allocate.
static struct kvm_cpuid2 *cpuid2_alloc(uint32_t count) {
    struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + count * sizeof(struct kvm_cpuid_entry2));
    if (c) c->nent = count;
    return c;
}

int ckvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid_entry2 *entries, uint32_t *count) {
    struct kvm_cpuid2 *c = cpuid2_alloc(*count);
    if (!c) return -ENOMEM;
    int r = ioctl(kvm_fd, KVM_GET_SUPPORTED_CPUID, c);
    int result = r < 0 ? -errno : r;
    if (r >= 0) {
        *count = c->nent;
        memcpy(entries, c->entries, c->nent * sizeof(*entries));
    }
    free(c);
    return result;
}

int ckvm_create_vcpu(int vm_fd, unsigned long vcpu_id) { CKVM_IOCTL(vm_fd, KVM_CREATE_VCPU, vcpu_id); }

int ckvm_set_user_memory_region(int vm_fd, uint32_t slot, uint32_t flags, uint64_t guest_phys_addr,
                                uint64_t memory_size, uint64_t userspace_addr) {
    struct kvm_userspace_memory_region region = {
        .slot = slot, .flags = flags, .guest_phys_addr = guest_phys_addr,
        .memory_size = memory_size, .userspace_addr = userspace_addr,
    };
    CKVM_IOCTL(vm_fd, KVM_SET_USER_MEMORY_REGION, &region);
}

int ckvm_set_tss_addr(int vm_fd, uint64_t address) { CKVM_IOCTL(vm_fd, KVM_SET_TSS_ADDR, (unsigned long)address); }
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address) { CKVM_IOCTL(vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &address); }
int ckvm_create_irqchip(int vm_fd) { CKVM_IOCTL(vm_fd, KVM_CREATE_IRQCHIP, 0); }

int ckvm_create_pit2(int vm_fd, uint32_t flags) {
    struct kvm_pit_config config = { .flags = flags };
    CKVM_IOCTL(vm_fd, KVM_CREATE_PIT2, &config);
}

int ckvm_irq_line(int vm_fd, uint32_t irq, uint32_t level) {
    struct kvm_irq_level line = { .irq = irq, .level = level };
    CKVM_IOCTL(vm_fd, KVM_IRQ_LINE, &line);
}

int ckvm_get_stats_fd(int fd) { CKVM_IOCTL(fd, KVM_GET_STATS_FD, 0); }

int ckvm_set_gsi_routing(int vm_fd, const ckvm_irq_route *routes, uint32_t count) {
    struct kvm_irq_routing *table = calloc(1, sizeof(*table) + count * sizeof(struct kvm_irq_routing_entry));
    if (!table) return -ENOMEM;
    table->nr = count;
    for (uint32_t i = 0; i < count; i++) {
        struct kvm_irq_routing_entry *e = &table->entries[i];
        e->gsi = routes[i].gsi;
        e->type = routes[i].type;
        if (routes[i].type == KVM_IRQ_ROUTING_MSI) {
            e->u.msi.address_lo = routes[i].address_lo;
            e->u.msi.address_hi = routes[i].address_hi;
            e->u.msi.data = routes[i].data;
        } else {
            e->u.irqchip.irqchip = routes[i].irqchip;
            e->u.irqchip.pin = routes[i].pin;
        }
    }
    int r = ioctl(vm_fd, KVM_SET_GSI_ROUTING, table);
    int result = r < 0 ? -errno : r;
    free(table);
    return result;
}

int ckvm_irqfd(int vm_fd, int eventfd, uint32_t gsi, int deassign) {
    struct kvm_irqfd irqfd = { .fd = (uint32_t)eventfd, .gsi = gsi, .flags = deassign ? KVM_IRQFD_FLAG_DEASSIGN : 0 };
    CKVM_IOCTL(vm_fd, KVM_IRQFD, &irqfd);
}

int ckvm_ioeventfd(int vm_fd, uint64_t address, uint32_t length, int eventfd, int pio, int deassign) {
    struct kvm_ioeventfd ioeventfd = {
        .addr = address, .len = length, .fd = eventfd,
        .flags = (pio ? KVM_IOEVENTFD_FLAG_PIO : 0) | (deassign ? KVM_IOEVENTFD_FLAG_DEASSIGN : 0),
    };
    CKVM_IOCTL(vm_fd, KVM_IOEVENTFD, &ioeventfd);
}

int ckvm_run(int vcpu_fd) { CKVM_IOCTL(vcpu_fd, KVM_RUN, 0); }
int ckvm_get_regs(int vcpu_fd, struct kvm_regs *regs) { CKVM_IOCTL(vcpu_fd, KVM_GET_REGS, regs); }
int ckvm_set_regs(int vcpu_fd, const struct kvm_regs *regs) { CKVM_IOCTL(vcpu_fd, KVM_SET_REGS, regs); }
int ckvm_get_sregs(int vcpu_fd, struct kvm_sregs *sregs) { CKVM_IOCTL(vcpu_fd, KVM_GET_SREGS, sregs); }
int ckvm_set_sregs(int vcpu_fd, const struct kvm_sregs *sregs) { CKVM_IOCTL(vcpu_fd, KVM_SET_SREGS, sregs); }

int ckvm_set_cpuid2(int vcpu_fd, const struct kvm_cpuid_entry2 *entries, uint32_t count) {
    struct kvm_cpuid2 *c = cpuid2_alloc(count);
    if (!c) return -ENOMEM;
    memcpy(c->entries, entries, count * sizeof(*entries));
    int r = ioctl(vcpu_fd, KVM_SET_CPUID2, c);
    int result = r < 0 ? -errno : r;
    free(c);
    return result;
}

/// struct kvm_msrs ends in a flexible array: one header and one entry, laid out together.
struct ckvm_one_msr {
    struct kvm_msrs header;
    struct kvm_msr_entry entry;
};

int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value) {
    struct ckvm_one_msr m = { .header = { .nmsrs = 1 }, .entry = { .index = index } };
    int r = ioctl(vcpu_fd, KVM_GET_MSRS, &m);
    if (r < 0) return -errno;
    *value = m.entry.data;
    return r;
}

int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value) {
    struct ckvm_one_msr m = { .header = { .nmsrs = 1 }, .entry = { .index = index, .data = value } };
    int r = ioctl(vcpu_fd, KVM_SET_MSRS, &m);
    return r < 0 ? -errno : r;
}

uint32_t ckvm_run_exit_reason(const struct kvm_run *run) { return run->exit_reason; }
void ckvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value) {
    __atomic_store_n(&run->immediate_exit, value, __ATOMIC_SEQ_CST);
}

ckvm_io_exit ckvm_run_io(const struct kvm_run *run) {
    ckvm_io_exit io = {
        .direction = run->io.direction, .size = run->io.size, .port = run->io.port,
        .count = run->io.count, .data_offset = run->io.data_offset,
    };
    return io;
}

ckvm_mmio_exit ckvm_run_mmio(const struct kvm_run *run) {
    ckvm_mmio_exit mmio = { .phys_addr = run->mmio.phys_addr, .len = run->mmio.len, .is_write = run->mmio.is_write };
    return mmio;
}

uint8_t *ckvm_run_mmio_data(struct kvm_run *run) { return run->mmio.data; }
uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run) { return run->fail_entry.hardware_entry_failure_reason; }
uint32_t ckvm_run_internal_suberror(const struct kvm_run *run) { return run->internal.suberror; }

uint32_t ckvm_run_internal_data(const struct kvm_run *run, uint64_t *out, uint32_t capacity) {
    uint32_t n = run->internal.ndata;
    uint32_t max = sizeof(run->internal.data) / sizeof(run->internal.data[0]);
    if (n > max) n = max;
    for (uint32_t i = 0; i < n && i < capacity; i++) out[i] = run->internal.data[i];
    return n;
}

uint32_t ckvm_run_system_event_type(const struct kvm_run *run) { return run->system_event.type; }

int ckvm_memfd_create(const char *name, unsigned int flags) {
    int fd = memfd_create(name, flags);
    return fd < 0 ? -errno : fd;
}

int ckvm_memfd_seal_size(int fd) {
    return fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_SEAL) < 0 ? -errno : 0;
}

int ckvm_memfd_is_size_sealed(int fd) {
    int seals = fcntl(fd, F_GET_SEALS);
    return seals < 0 ? -errno : (seals & F_SEAL_SHRINK) != 0;
}

int ckvm_memfd_is_shmem(int fd) {
    struct statfs fs;
    if (fstatfs(fd, &fs) < 0) return -errno;
    return fs.f_type == TMPFS_MAGIC;
}

int ckvm_eventfd(unsigned int initial) {
    int fd = eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd < 0 ? -errno : fd;
}
