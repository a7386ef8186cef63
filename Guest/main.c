#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/layout.h"
#include "malv/string.h"
#include "malv/system.h"
#include "malv/test.h"

static const struct guest_test tests[] = {
    { "hello", test_hello, "banner, command line and memory map" },
    { "selftest", test_selftest, "guest memory, CPUID and PIT interrupt checks" },
    { "idle", test_idle, "spin until the VMM stops the guest" },
    { "pci", test_pci, "list PCI functions, BARs and capabilities" },
    { "blk", test_blk, "virtio-blk: write, flush, read back, verify; polled and MSI-X" },
    { "blkbench", test_blkbench, "virtio-blk throughput and IOPS" },
    { "vgpu", test_vgpu, "para-vGPU: every compute opcode against the CPU, batches, contexts, refusals" },
    { "vgpu-hostile", test_vgpu_hostile, "para-vGPU: malformed requests, streams and chains; a second context keeps working" },
    { "vgpubench", test_vgpubench, "para-vGPU submission latency and throughput per batch size" },
    { "vgpuload", test_vgpuload, "para-vGPU: keep submissions in flight for a while (sharing measurements)" },
    { "mlaas", test_mlaas, "para-vGPU MLaaS requests: list, enable preprocess (valid, malformed), unknown, disable" },
    { "shuffleread", test_shuffleread, "the MNIST train records read one request each in a fixed shuffle, epoch after epoch (MLaaS prefetch's workload)" },
    { "preprocess", test_preprocess, "MLaaS preprocess: batches augmented on the host's GPU from the MNIST disk, checked against the CPU reference; refusals" },
    { "cnn", test_cnn, "the CNN job on the MNIST disk: preprocessing on this vCPU (cnn_pp=guest) or offloaded to MLaaS preprocess (cnn_pp=host)" },
    { "train", test_train, "para-vGPU: train an MLP on the digits disk image (scripts/make-dataset)" },
    { "hotplug", test_hotplug, "PCIe native hot-plug: a vGPU arrives, is used, is detached" },
    { "fullvgpu", test_fullvgpu, "full-vGPU: ring commands and kernel streams against the CPU" },
    { "fullvgpu-hostile", test_fullvgpu_hostile, "full-vGPU: bad rings, addresses, commands and streams fault as the G-VMCS defines" },
    { "fullvgpubench", test_fullvgpubench, "full-vGPU submission latency and throughput per batch size" },
    { "smp", test_smp, "start every CPU in the MADT with INIT-SIPI-SIPI, run work on each, check all ran" },
};

#define TEST_COUNT (sizeof tests / sizeof tests[0])

void guest_main(uint64_t start_info_paddr)
{
    const char *error = bootinfo_init(start_info_paddr);
    if (error) {
        printf("malvguest: %s (start_info at 0x%llx)\n", error,
               (unsigned long long)start_info_paddr);
        guest_exit(EXIT_BAD_BOOT_INFO);
    }

    char name[64] = "";
    cmdline_get("test", name, sizeof name);
    for (unsigned i = 0; i < TEST_COUNT; i++)
        if (strcmp(name, tests[i].name) == 0)
            guest_exit((uint32_t)tests[i].run());

    printf("unknown test '%s'; available:", name);
    for (unsigned i = 0; i < TEST_COUNT; i++)
        printf(" %s", tests[i].name);
    printf("\n");
    guest_exit(EXIT_UNKNOWN_TEST);
}
