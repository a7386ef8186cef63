// CKVM: the thin C layer between Swift and the KVM ioctl interface.
//
// Swift cannot call the variadic ioctl(2) and cannot name the anonymous unions
// inside struct kvm_run, so this shim gives each ioctl a typed function and
// each kvm_run exit a flat accessor. It holds no state and makes no decisions.
//
// Every function returns the ioctl's non-negative result, or -errno.
#ifndef CKVM_H
#define CKVM_H

#include <stdint.h>
#include <stddef.h>
#include <linux/kvm.h>

// --- /dev/kvm (system) ---
int ckvm_get_api_version(int kvm_fd);
int ckvm_check_extension(int fd, int capability);
int ckvm_create_vm(int kvm_fd, unsigned long machine_type);
int ckvm_get_vcpu_mmap_size(int kvm_fd);
/// Fills `entries` (capacity `*count`) with KVM_GET_SUPPORTED_CPUID; `*count` is updated.
int ckvm_get_supported_cpuid(int kvm_fd, struct kvm_cpuid_entry2 *entries, uint32_t *count);

// --- VM ---
int ckvm_create_vcpu(int vm_fd, unsigned long vcpu_id);
int ckvm_set_user_memory_region(int vm_fd, uint32_t slot, uint32_t flags,
                                uint64_t guest_phys_addr, uint64_t memory_size,
                                uint64_t userspace_addr);
int ckvm_set_tss_addr(int vm_fd, uint64_t address);
int ckvm_set_identity_map_addr(int vm_fd, uint64_t address);
int ckvm_create_irqchip(int vm_fd);
int ckvm_create_pit2(int vm_fd, uint32_t flags);
int ckvm_irq_line(int vm_fd, uint32_t irq, uint32_t level);
int ckvm_get_stats_fd(int fd);

/// One GSI routing entry, flattened from struct kvm_irq_routing_entry's union.
typedef struct {
    uint32_t gsi;
    uint32_t type;  // KVM_IRQ_ROUTING_IRQCHIP or KVM_IRQ_ROUTING_MSI
    uint32_t irqchip, pin;  // IRQCHIP: KVM_IRQCHIP_PIC_MASTER/SLAVE/IOAPIC and its pin
    uint32_t address_lo, address_hi, data;  // MSI
} ckvm_irq_route;

/// KVM_SET_GSI_ROUTING: replaces the whole table.
int ckvm_set_gsi_routing(int vm_fd, const ckvm_irq_route *routes, uint32_t count);

/// KVM_IRQFD: a write to `eventfd` injects `gsi` in the kernel, with no exit to userspace.
int ckvm_irqfd(int vm_fd, int eventfd, uint32_t gsi, int deassign);
/// KVM_IOEVENTFD: a guest write of `length` bytes (0 = any) to `address` signals `eventfd`
/// in the kernel instead of exiting to userspace. `pio` selects port I/O over MMIO.
int ckvm_ioeventfd(int vm_fd, uint64_t address, uint32_t length, int eventfd, int pio, int deassign);

// --- vCPU ---
int ckvm_run(int vcpu_fd);
int ckvm_get_regs(int vcpu_fd, struct kvm_regs *regs);
int ckvm_set_regs(int vcpu_fd, const struct kvm_regs *regs);
int ckvm_get_sregs(int vcpu_fd, struct kvm_sregs *sregs);
int ckvm_set_sregs(int vcpu_fd, const struct kvm_sregs *sregs);
int ckvm_set_cpuid2(int vcpu_fd, const struct kvm_cpuid_entry2 *entries, uint32_t count);
/// KVM_GET_MSRS / KVM_SET_MSRS for one MSR; return the number of MSRs done (1), or -errno.
int ckvm_get_msr(int vcpu_fd, uint32_t index, uint64_t *value);
int ckvm_set_msr(int vcpu_fd, uint32_t index, uint64_t value);

// --- kvm_run accessors (the struct is mmap'd from the vCPU fd) ---
typedef struct {
    uint8_t direction;   // KVM_EXIT_IO_IN / KVM_EXIT_IO_OUT
    uint8_t size;        // 1, 2 or 4 bytes per access
    uint16_t port;
    uint32_t count;      // > 1 for string I/O (rep ins/outs)
    uint64_t data_offset;  // from the start of kvm_run
} ckvm_io_exit;

typedef struct {
    uint64_t phys_addr;
    uint32_t len;
    uint8_t is_write;
} ckvm_mmio_exit;

uint32_t ckvm_run_exit_reason(const struct kvm_run *run);
void ckvm_run_set_immediate_exit(struct kvm_run *run, uint8_t value);
ckvm_io_exit ckvm_run_io(const struct kvm_run *run);
ckvm_mmio_exit ckvm_run_mmio(const struct kvm_run *run);
/// The 8-byte data buffer of an MMIO exit: the device fills it on reads.
uint8_t *ckvm_run_mmio_data(struct kvm_run *run);
uint64_t ckvm_run_fail_entry_reason(const struct kvm_run *run);
uint32_t ckvm_run_internal_suberror(const struct kvm_run *run);
/// Copies up to `capacity` words of internal-error data; returns how many exist.
uint32_t ckvm_run_internal_data(const struct kvm_run *run, uint64_t *out, uint32_t capacity);
uint32_t ckvm_run_system_event_type(const struct kvm_run *run);

// --- guest RAM backing ---
/// memfd_create(2): glibc declares it only under _GNU_SOURCE, which Swift's Glibc module lacks.
int ckvm_memfd_create(const char *name, unsigned int flags);
#define CKVM_MFD_CLOEXEC 0x0001U
#define CKVM_MFD_ALLOW_SEALING 0x0002U
/// Seals the memfd against shrinking (F_SEAL_SHRINK | F_SEAL_SEAL), so a process it is shared with
/// can never see its mapping cut short (SIGBUS); 0 or -errno.
int ckvm_memfd_seal_size(int fd);
/// Whether `fd` is sealed against shrinking: 1, 0, or -errno.
int ckvm_memfd_is_size_sealed(int fd);
/// Whether `fd` lives on shmem (an ordinary memfd: TMPFS_MAGIC), not hugetlbfs or a disk file: 1, 0, or -errno.
int ckvm_memfd_is_shmem(int fd);
/// eventfd(2) with EFD_CLOEXEC | EFD_NONBLOCK.
int ckvm_eventfd(unsigned int initial);

#endif
