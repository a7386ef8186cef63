/*
 * test=mlaas: the guest's side of MLaaS through its para-vGPU (capset 0x4d
 * version 2, docs/vgpu-protocol.md "MLaaS requests"). Lists the services this
 * VM is permitted, enables `preprocess` with a valid and with a malformed
 * pipeline, enables an unknown service, disables `preprocess`; one line per
 * step, `mlaas: <step>: OK` or `mlaas: <step>: <ERR_...> (<reason>): <message>`.
 *
 * Options: `mlaas_pipeline=...` replaces the valid pipeline (default: the
 * digits image's records); `mlaas_wait_unload=1` after the valid enable prints
 * `mlaas: waiting for unload`, lists until `preprocess` is no longer loaded
 * (bounded: 60 s), then goes on (so the host can unload it between requests).
 * Exits 0 unless the device could not be reached; the host reads the lines.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/tsc.h"
#include "malv/vgpu.h"
#include "malv/x86.h"

#define SERVICE "preprocess"
#define VALID_PIPELINE "disk=0,offset=512,records=1000,image=8x8x1,batch=50"
#define MALFORMED_PIPELINE "disk=0,records=zero,image=8x8"

static struct vgpu gpu;

static bool transport_broken;

static void report(const char *step, uint32_t st, const struct vgpu_mlaas_error *err)
{
    if (st == VIRTIO_GPU_STATUS_OK)
        printf("mlaas: %s: OK\n", step);
    else if (err->status)
        printf("mlaas: %s: %s (%s): %s\n", step, vgpu_status_name(st), vgpu_mlaas_status_name(err->status),
               err->message);
    else
        printf("mlaas: %s: %s\n", step, vgpu_status_name(st));
    if (st == VIRTIO_GPU_STATUS_TRANSPORT)
        transport_broken = true;
}

/* Lists; returns whether `name` is loaded (false also on errors). */
static bool list(const char *name)
{
    struct vgpu_mlaas_service services[VIRTIO_GPU_MLAAS_MAX_LIST];
    struct vgpu_mlaas_error err;
    uint32_t count = 0, total = 0;
    uint32_t st = vgpu_mlaas_list(&gpu, services, VIRTIO_GPU_MLAAS_MAX_LIST, &count, &total, &err);
    if (st != VIRTIO_GPU_STATUS_OK) {
        report("list", st, &err);
        return false;
    }
    bool loaded = false;
    printf("mlaas: list: %u of %u:", count, total);
    for (uint32_t i = 0; i < count; i++) {
        printf(" %s(%s%s)", services[i].name, services[i].loaded ? "loaded" : "not loaded",
               services[i].enabled ? ",enabled" : "");
        if (strcmp(services[i].name, name) == 0)
            loaded = services[i].loaded;
    }
    printf("\n");
    return loaded;
}

static bool loaded_quietly(const char *name)
{
    struct vgpu_mlaas_service services[VIRTIO_GPU_MLAAS_MAX_LIST];
    uint32_t count = 0, total = 0;
    if (vgpu_mlaas_list(&gpu, services, VIRTIO_GPU_MLAAS_MAX_LIST, &count, &total, NULL) != VIRTIO_GPU_STATUS_OK)
        return false;
    for (uint32_t i = 0; i < count; i++)
        if (strcmp(services[i].name, name) == 0)
            return services[i].loaded;
    return false;
}

static void enable(const char *step, const char *name, const char *params)
{
    struct vgpu_mlaas_error err;
    uint32_t st = vgpu_mlaas_enable(&gpu, name, params, (uint32_t)strlen(params), &err);
    report(step, st, &err);
}

static void disable(const char *step, const char *name)
{
    struct vgpu_mlaas_error err;
    report(step, vgpu_mlaas_disable(&gpu, name, &err), &err);
}

int test_mlaas(void)
{
    const char *why = vgpu_open(&gpu, 0);
    if (why) {
        printf("mlaas: FAIL: %s\n", why);
        return 1;
    }
    printf("mlaas: capset v%u, requests %s\n", gpu.dev.capset_max_version,
           vgpu_mlaas_available(&gpu) ? "available" : "not available");

    static char pipeline[256] = VALID_PIPELINE;
    cmdline_get("mlaas_pipeline", pipeline, sizeof pipeline);
    char wait[8] = "";
    cmdline_get("mlaas_wait_unload", wait, sizeof wait);

    list(SERVICE);
    enable("enable " SERVICE " (valid pipeline)", SERVICE, pipeline);
    list(SERVICE);
    if (strcmp(wait, "1") == 0) {
        printf("mlaas: waiting for unload\n");
        console_flush();
        uint64_t hz = tsc_calibrate();
        uint64_t start = rdtsc();
        while (loaded_quietly(SERVICE) && rdtsc() - start < 60 * hz) {
            uint64_t pause_until = rdtsc() + hz / 100;
            while (rdtsc() < pause_until)
                __asm__ volatile("pause");
        }
        list(SERVICE);
    }
    enable("enable " SERVICE " (malformed pipeline)", SERVICE, MALFORMED_PIPELINE);
    enable("enable nosuch", "nosuch", "");
    enable("enable Bad/Name", "Bad/Name", "");
    disable("disable " SERVICE, SERVICE);
    disable("disable " SERVICE " again", SERVICE);
    list(SERVICE);
    printf("mlaas: done\n");
    return transport_broken ? 1 : 0;
}
