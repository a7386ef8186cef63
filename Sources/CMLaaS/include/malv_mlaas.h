/*
 * malv_mlaas.h — the C ABI between malvvm (the host: `malvvm run`, `malvvm gpud`) and an MLaaS
 * service module (docs/mlaas.md).
 *
 * A service is a shared library that exports ONE symbol, MALV_MLAAS_ENTRY_SYMBOL:
 *
 *     const malv_mlaas_service *malv_mlaas_service_v1(void);
 *
 * It returns a descriptor with static storage duration (never freed, the same pointer on every
 * call). The host loads a module with dlopen from its operator-owned module directory only,
 * resolves the entry symbol, checks the descriptor (magic, ABI version, struct size, name,
 * kind, entry points, reserved slots) and calls `initialize` once. Then, any number of times,
 * `attach` (a VM selected the service), `configure` for an attached VM, and `detach`; finally
 * `unload` (after every VM was detached) and dlclose.
 *
 * Versioning. MALV_MLAAS_ABI_VERSION is the one number both sides compare, exactly: a host
 * refuses a module whose `abi_version` differs from its own (older or newer), and a module
 * should refuse (MALV_MLAAS_E_VERSION from `initialize`) a host table whose `abi_version`
 * differs from the one it was built with. Every struct that crosses the boundary carries
 * `struct_size` (its sizeof on the writer's side), so a mismatch is caught even where a version
 * number was not bumped. The reserved slots are NULL (a host refuses a descriptor that sets
 * one); the slice that gives them meaning bumps the version. ABI 2 gave three of them meaning:
 * the host's `gpu` table (GPUHost kernels on the VM's vGPU context buffers), the service's
 * `disable` and `request` (the guest's MLAAS_DISABLE and MLAAS_REQUEST); nothing else moved.
 * A host-table slot may instead become a CAPABILITY with its own version and struct_size (the
 * `block` and `scheduler` tables): a module that predates it never reads the slot, so the ABI version stays and
 * existing modules keep loading; a module that uses it checks the capability's version and size.
 *
 * Threading. The host never runs two lifecycle calls (initialize, attach, detach, unload) of
 * one service at once, nor a lifecycle call beside a `configure`. `configure` calls for
 * different VMs may run concurrently on different threads; calls for the same VM never do.
 * Host callbacks may be called from any thread between `initialize` returning and `unload`
 * returning.
 *
 * Memory. Strings the host passes (VM names, parameters) are valid only during the call; copy
 * what you keep. Strings in the descriptor must have static storage. Keep the service's state
 * in what `initialize` and `attach` return, not in globals: the host opens modules with
 * RTLD_NODELETE (a Swift module cannot be unmapped: the Swift runtime keeps pointers into its
 * metadata), so an unloaded module stays mapped, and loading it again reuses its globals.
 *
 * Errors are negative malv_mlaas_status values; 0 is success.
 */
#ifndef MALV_MLAAS_H
#define MALV_MLAAS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** The ABI this header describes. Bumped on any incompatible change. */
#define MALV_MLAAS_ABI_VERSION 2u
/** The one symbol a service module exports (its name carries the ABI's major version). */
#define MALV_MLAAS_ENTRY_SYMBOL "malv_mlaas_service_v1"
/** `magic` of a descriptor: "MLAS" in little-endian byte order. */
#define MALV_MLAAS_MAGIC 0x53414c4du

/** Longest service name (bytes, without the NUL): [a-z0-9][a-z0-9-]* , like a DNS label. */
#define MALV_MLAAS_NAME_MAX 32
/** Longest version string (bytes, without the NUL), printable ASCII. */
#define MALV_MLAAS_VERSION_MAX 32
/** Longest description (bytes, without the NUL). */
#define MALV_MLAAS_DESCRIPTION_MAX 256
/** Capacity of the error buffer the host hands to `configure` (bytes, with the NUL). */
#define MALV_MLAAS_ERROR_MAX 256

typedef int32_t malv_mlaas_status;
#define MALV_MLAAS_OK 0
#define MALV_MLAAS_E_INVALID (-1)     /* a malformed argument or parameter */
#define MALV_MLAAS_E_NOT_FOUND (-2)   /* no such VM, range or item */
#define MALV_MLAAS_E_RANGE (-3)       /* outside a granted range, or longer than a bound */
#define MALV_MLAAS_E_NO_MEMORY (-4)
#define MALV_MLAAS_E_IO (-5)          /* the host could not read what it was asked for */
#define MALV_MLAAS_E_DETACHED (-6)    /* the VM is no longer attached to this service */
#define MALV_MLAAS_E_UNSUPPORTED (-7) /* a capability this host (or slice) does not offer */
#define MALV_MLAAS_E_VERSION (-8)     /* the other side speaks another ABI version */
#define MALV_MLAAS_E_INTERNAL (-9)

/** What a service does for whom (issue #17's two halves). */
typedef enum malv_mlaas_kind {
    /** The platform takes system-sensitive parts of a model's pipeline (preprocessing). */
    MALV_MLAAS_KIND_OS_FOR_ML = 1,
    /** A learned policy that helps the platform manage the VM (scheduling, read-ahead). */
    MALV_MLAAS_KIND_ML_FOR_OS = 2,
} malv_mlaas_kind;

/** Levels of `malv_mlaas_host.log`. */
typedef enum malv_mlaas_log_level {
    MALV_MLAAS_LOG_ERROR = 0,
    MALV_MLAAS_LOG_WARNING = 1,
    MALV_MLAAS_LOG_INFO = 2,
    MALV_MLAAS_LOG_DEBUG = 3,
} malv_mlaas_log_level;

/** Flags of a disk range. */
#define MALV_MLAAS_RANGE_READ_ONLY 0x1u

/**
 * A byte range of one of the VM's own disks that the service may read through
 * `malv_mlaas_host.read_range`. The handle is opaque: it means something only to the host that
 * issued it, for the VM it was issued for, while that VM stays attached.
 */
typedef struct malv_mlaas_disk_range {
    uint64_t handle;
    /** The disk's position among the VM's virtio-blk disks (0 for the first --disk). */
    uint32_t disk_index;
    uint32_t flags;      /* MALV_MLAAS_RANGE_*; grants are always READ_ONLY */
    /** Bytes in the range; reads address it from 0 to length. */
    uint64_t length;
} malv_mlaas_disk_range;

/* ---- GPU kernels on the VM's vGPU context (ABI 2) ------------------------------------------ */

/** What `malv_mlaas_gpu.run` runs: GPUHost's kernels, with docs/vgpu-protocol.md's semantics. */
typedef enum malv_mlaas_gpu_op {
    /** NHWC u8 -> NCHW f32: out = (in * scale - mean[c]) / std[c] (channels 1-4; unused 0). */
    MALV_MLAAS_GPU_NORMALIZE_U8 = 1,
    /** NCHW f32: out[n][c][y][x] = padded[n][c][top + y][left + x], the input padded by
     *  `padding` elements of `pad_value` on every side (top + out_height <= height + 2 padding).
     *  With `offsets`: u32 (top, left, flip) per image, each image cropped at its own offset and
     *  mirrored where flip is not 0, in one dispatch (`top` and `left` then 0). */
    MALV_MLAAS_GPU_CROP = 2,
    /** NCHW f32 mirror: out[n][c][y][x] = in[n][c][y][width - 1 - x]. */
    MALV_MLAAS_GPU_FLIP_HORIZONTAL = 3,
    /** NCHW f32 bilinear resize, half-pixel centres (PyTorch's align_corners=False). */
    MALV_MLAAS_GPU_RESIZE_BILINEAR = 4,
    /** 4-byte words from input to output (same length, no overlap). */
    MALV_MLAAS_GPU_COPY = 5,
} malv_mlaas_gpu_op;

/** `malv_mlaas_gpu_buffer.kind`. */
#define MALV_MLAAS_GPU_SCRATCH 1u   /* a scratch buffer `allocate` returned */
#define MALV_MLAAS_GPU_RESOURCE 2u  /* a resource of the context (attached to it, owned by it, GPU memory only) */

/** A byte range of a scratch buffer or of one of the context's resources. */
typedef struct malv_mlaas_gpu_buffer {
    uint32_t kind;
    /** The scratch handle, or the context's resource id. */
    uint32_t id;
    /** Bytes, multiples of the element size (u8 for NORMALIZE_U8's input, else 4). */
    uint64_t offset;
    uint64_t length;
} malv_mlaas_gpu_buffer;

/** One kernel. Fields an op does not use must be 0. */
typedef struct malv_mlaas_gpu_kernel {
    uint32_t op;        /* malv_mlaas_gpu_op */
    uint32_t batch, channels, height, width;
    uint32_t out_height, out_width;     /* CROP, RESIZE_BILINEAR */
    uint32_t top, left, padding;        /* CROP */
    float scale;                        /* NORMALIZE_U8 */
    float pad_value;                    /* CROP */
    float mean[4], std[4];              /* NORMALIZE_U8 */
    malv_mlaas_gpu_buffer input, output;
    /** CROP's per-image (top, left, flip) u32 triples; all 0 (kind 0): none. */
    malv_mlaas_gpu_buffer offsets;
} malv_mlaas_gpu_kernel;

/** Host bytes copied into a scratch buffer before a run's kernels. */
typedef struct malv_mlaas_gpu_upload {
    uint32_t scratch;
    uint32_t reserved;  /* 0 */
    uint64_t offset;    /* bytes into the scratch buffer */
    const void *bytes;
    uint64_t length;
} malv_mlaas_gpu_upload;

/**
 * GPUHost kernels on one of the VM's vGPU contexts: `malv_mlaas_host.gpu`. The context is the
 * one a guest names in its parameters, on the vGPU its MLAAS_ENABLE came through: a service
 * reaches only that vGPU's contexts, and only resources attached to and owned by the context.
 * Every call may fail with E_DETACHED (the VM was detached), E_UNSUPPORTED (the VM's last
 * enable did not come through a vGPU: no GPU to run on), E_NOT_FOUND (no such context, scratch
 * or resource: another context's or one that is gone), E_INVALID (a malformed argument),
 * E_INTERNAL (the GPU failed). Scratch memory and GPU time are charged to the context's
 * scheduler client: the VM pays for its preprocessing out of its own vGPU's share and quota.
 */
typedef struct malv_mlaas_gpu {
    uint32_t struct_size;   /* sizeof(malv_mlaas_gpu) */
    /** The most kernels (and uploads) one `run` takes. */
    uint32_t max_kernels;
    /**
     * The size in bytes of resource `resource` of context `context`, if it is attached to and
     * owned by the context and lives in GPU memory only (a HOST3D blob). A GUEST blob is
     * E_INVALID: its guest pages are copied over its GPU copy before every submission that
     * reads it, so what a service wrote there would not survive.
     */
    int64_t (*resource_size)(void *host_context, uint64_t vm, uint32_t context, uint32_t resource);
    /** `bytes` of zeroed GPU memory for context `context`: a scratch handle (> 0) or a status
     *  (E_NO_MEMORY beyond the context's quota). Freed by `release`, or with the context, or
     *  when the VM is detached. */
    int64_t (*allocate)(void *host_context, uint64_t vm, uint32_t context, uint64_t bytes);
    void (*release)(void *host_context, uint64_t vm, uint32_t context, uint32_t scratch);
    /**
     * Copies the uploads into scratch buffers, then runs the kernels in order as one batch of
     * the context's scheduler client, queued behind everything the guest queued on the context
     * before (so it never overwrites a buffer a guest submission still reads), and returns
     * when it completed. Every kernel is validated (shapes, bounds, aliasing) before anything
     * runs; on an error, one line goes to `error`.
     */
    malv_mlaas_status (*run)(void *host_context, uint64_t vm, uint32_t context,
                             const malv_mlaas_gpu_upload *uploads, uint32_t upload_count,
                             const malv_mlaas_gpu_kernel *kernels, uint32_t kernel_count,
                             char *error, uint64_t error_capacity);
} malv_mlaas_gpu;

/** A VM as `attach` sees it. Valid only during the call (copy what you keep). */
typedef struct malv_mlaas_vm {
    uint32_t struct_size;        /* sizeof(malv_mlaas_vm) */
    uint32_t disk_range_count;
    /** The host's handle for this VM; never 0; what callbacks take as `vm`. */
    uint64_t handle;
    /** The VM's name (NUL-terminated, at most 64 bytes). */
    const char *name;
    /** The ranges granted to the service for this VM (may be NULL when the count is 0). */
    const malv_mlaas_disk_range *disk_ranges;
} malv_mlaas_vm;

/* ---- Block hooks: read-ahead in virtio-blk (host table `block`) ---------------------------- */

/** `malv_mlaas_block.version` this header describes; a later, larger table keeps these fields. */
#define MALV_MLAAS_BLOCK_VERSION 1u

/**
 * Called by the host for every guest read that touches a watched range, in the order the guest's
 * requests are served, on the disk's device thread, BEFORE the read is served (so a read-ahead
 * asked from here may already be in flight for the next read). `offset` and `length` are bytes
 * relative to the range (a read partly outside the range is clipped to it). Keep it short: the
 * guest's read waits for it. It may call `read_ahead` and `log`, never `watch` or `unwatch`.
 */
typedef void (*malv_mlaas_block_observer)(void *cookie, uint64_t range, uint64_t offset, uint64_t length);

/**
 * Read-ahead in virtio-blk, for a service that learns a VM's read pattern (`prefetch`). The VMM
 * owns the I/O and the cache: a service never sees a file descriptor or the cached bytes; it only
 * observes reads and names byte ranges of a disk it was granted for the host to read ahead into
 * a cache of that disk (a fixed byte budget, oldest entries evicted first, entries overlapping a
 * guest write dropped), from which virtio-blk serves later guest reads it covers whole.
 * Every call may fail with E_NOT_FOUND (a range not granted to this service for this VM),
 * E_DETACHED (the VM was detached), E_UNSUPPORTED (the range's disk is not a virtio-blk of this
 * process: a grant without a device behind it).
 */
typedef struct malv_mlaas_block {
    uint32_t struct_size;   /* sizeof(malv_mlaas_block) on the host's side */
    uint32_t version;       /* MALV_MLAAS_BLOCK_VERSION of the host */
    /** The cache's byte budget per watched disk. */
    uint64_t cache_bytes;
    /** The cache's unit: read-aheads are widened to whole, aligned granules of this many bytes. */
    uint64_t granule_bytes;
    /** The most one `read_ahead` asks for (bytes). */
    uint64_t max_read_ahead_bytes;
    /**
     * Calls `observer(cookie, range, …)` for every guest read of the range's disk from now on, and
     * gives the disk a read-ahead cache. One watcher per disk (another is E_INVALID). The host
     * stops it by itself when the VM is detached, before the service's `detach` runs.
     */
    malv_mlaas_status (*watch)(void *host_context, uint64_t vm, uint64_t range, malv_mlaas_block_observer observer,
                               void *cookie);
    /** Stops the observer and drops the disk's cache (guest reads go on uncached). When it
     *  returns, no observer call is running or will start. Unknown ranges are ignored. */
    void (*unwatch)(void *host_context, uint64_t vm, uint64_t range);
    /**
     * Asks the host to read bytes `offset ..< offset + length` of a watched range into its cache,
     * in the background; returns at once. E_RANGE: not wholly inside the range, or longer than
     * `max_read_ahead_bytes`; E_INVALID: the range is not watched; E_NO_MEMORY: the host's queue
     * of read-aheads is full (the request is dropped). Granules already cached or queued are
     * not read again.
     */
    malv_mlaas_status (*read_ahead)(void *host_context, uint64_t vm, uint64_t range, uint64_t offset, uint64_t length);
} malv_mlaas_block;

/* ---- Scheduler hooks: batch-duration models (host table `scheduler`) ------------------------ */

/** `malv_mlaas_scheduler.version` this header describes; a later, larger table keeps these fields. */
#define MALV_MLAAS_SCHEDULER_VERSION 1u

/**
 * A model of how long a VM's GPU batches take, which the GPU scheduler consults for every batch
 * one of the VM's scheduler clients (a vGPU context) queues: a batch predicted to run longer than
 * a slice and a half is cut at kernel boundaries into pieces of about three quarters of a slice,
 * so other clients' short batches wait for a piece, not for the whole batch (the `learned-slice`
 * policy; docs/mlaas.md). Cutting changes only when the VM's own kernels reach the device, never
 * what they compute or what the VM is charged: a VM's model cannot take another VM's share.
 *
 * Both callbacks run on the scheduler's threads WITH THE SCHEDULER'S LOCK HELD: keep them short
 * (a table lookup), never block, never call into the host. `client` names the scheduler client
 * (stable while it exists, never reused); `signature` names the batch's kernel list (equal
 * signatures, equal kernels: a training step that repeats, a decode-cache entry; never reused
 * for another list); `work` is the batch's work in the scheduler's units (a kernel's element
 * operations), which relates batches of one client that were never seen before to seen ones.
 */
typedef struct malv_mlaas_batch_model {
    uint32_t struct_size;   /* sizeof(malv_mlaas_batch_model) on the service's side */
    uint32_t reserved;      /* 0 */
    void *cookie;
    /** The expected device time in nanoseconds of a batch about to be queued; a negative value
     *  (or NaN): nothing known, the batch goes whole. */
    double (*predict)(void *cookie, uint64_t client, uint64_t signature, double work);
    /** A batch (all its pieces) retired: it took `nanoseconds` of device time. */
    void (*observe)(void *cookie, uint64_t client, uint64_t signature, double work, double nanoseconds);
} malv_mlaas_batch_model;

/**
 * Hooks into the GPU scheduler that serves the VM's vGPUs, for a learned scheduling policy. The
 * host copies the model and applies it to every scheduler client of the VM, present and future,
 * until it is cleared or the VM is detached (the host clears it itself before `detach` runs).
 * Every call may fail with E_DETACHED (the VM was detached) or E_UNSUPPORTED (no scheduler behind
 * this VM in this process: a VM whose vGPUs a GPU daemon serves selects the service there).
 */
typedef struct malv_mlaas_scheduler {
    uint32_t struct_size;   /* sizeof(malv_mlaas_scheduler) on the host's side */
    uint32_t version;       /* MALV_MLAAS_SCHEDULER_VERSION of the host */
    /** The scheduler's time slice with one client (nanoseconds): what a model predicts against. */
    uint64_t time_slice_ns;
    /** Installs (or replaces) the VM's model. E_INVALID: NULL model or callbacks, a struct_size
     *  below this header's. */
    malv_mlaas_status (*set_batch_model)(void *host_context, uint64_t vm, const malv_mlaas_batch_model *model);
    /** Removes the VM's model; when it returns, no callback of it is running or will start. */
    void (*clear_batch_model)(void *host_context, uint64_t vm);
} malv_mlaas_scheduler;

/**
 * What the host offers a service: passed to `initialize`, valid until `unload` returns. Callbacks
 * take `host_context` as their first argument.
 */
typedef struct malv_mlaas_host {
    uint32_t struct_size;   /* sizeof(malv_mlaas_host) */
    uint32_t abi_version;   /* MALV_MLAAS_ABI_VERSION of the host */
    void *host_context;

    /** One line in the host's log (the host prefixes the service's name; at most 1 KiB kept). */
    void (*log)(void *host_context, int32_t level, const char *message);

    /**
     * Reads `length` bytes at `offset` of a granted range of VM `vm` into `buffer`. Returns the
     * bytes read (fewer only at the end of the backing file), or a negative malv_mlaas_status:
     * E_NOT_FOUND (unknown range or VM), E_DETACHED (the VM was detached), E_RANGE (offset +
     * length beyond the range, or length above `max_read_bytes`), E_IO, E_INVALID (NULL buffer).
     * The host reads the disk's backing file read-only; the guest's own I/O is not disturbed.
     */
    int64_t (*read_range)(void *host_context, uint64_t vm, uint64_t range, uint64_t offset,
                          void *buffer, uint64_t length);
    /** The most one read_range call returns. */
    uint64_t max_read_bytes;

    /** GPUHost kernels on the VM's vGPU context buffers (ABI 2; NULL where the host has no GPU). */
    const malv_mlaas_gpu *gpu;
    /**
     * Hooks into the GPU scheduler: a model of the VM's batch durations (`malv_mlaas_scheduler`;
     * was `reserved_scheduler_hooks`). A capability like `block`: its own version and size, no
     * ABI bump. NULL where this process schedules no GPU work of the VM.
     */
    const struct malv_mlaas_scheduler *scheduler;
    /**
     * Hooks into virtio-blk: watch the VM's reads of a granted disk, read ahead into the host's
     * cache (`malv_mlaas_block`; was `reserved_block_hooks`). A capability with its own
     * `version` and `struct_size`, so filling the slot did not bump MALV_MLAAS_ABI_VERSION: an
     * ABI-2 module built before it never looks at the slot and keeps loading. NULL where the
     * host has no virtio-blk (gpud).
     */
    const struct malv_mlaas_block *block;
    const void *reserved[4];
} malv_mlaas_host;

/** A service module's descriptor: what MALV_MLAAS_ENTRY_SYMBOL returns. */
typedef struct malv_mlaas_service {
    uint32_t magic;         /* MALV_MLAAS_MAGIC */
    uint32_t abi_version;   /* MALV_MLAAS_ABI_VERSION the module was built with */
    uint32_t struct_size;   /* sizeof(malv_mlaas_service) */
    uint32_t kind;          /* malv_mlaas_kind */
    /** [a-z0-9][a-z0-9-]*, at most MALV_MLAAS_NAME_MAX bytes: unique among loaded services. */
    const char *name;
    /** Printable ASCII, at most MALV_MLAAS_VERSION_MAX bytes, e.g. "0.1.0". */
    const char *version;
    /** One line for `malvvm mlaas list`, at most MALV_MLAAS_DESCRIPTION_MAX bytes (may be NULL). */
    const char *description;

    /**
     * Called once after loading. Check `host->abi_version` and `host->struct_size`, keep `host`
     * (valid until unload returns) and put the service's state in `*service_state`.
     * A non-zero status fails the load: the host dlcloses the module without calling unload.
     */
    malv_mlaas_status (*initialize)(const malv_mlaas_host *host, void **service_state);

    /**
     * A VM selected the service. Put per-VM state in `*vm_state`. A non-zero status refuses the
     * VM (then no detach follows).
     */
    malv_mlaas_status (*attach)(void *service_state, const malv_mlaas_vm *vm, void **vm_state);

    /**
     * Parameters for an attached VM (what the guest's MLAAS_ENABLE carries; the host's `gpu`
     * reaches the vGPU it came through from this call on): `parameters` is `length` bytes whose
     * format the service defines. On an
     * error, write one line (NUL-terminated, at most `error_capacity` bytes) to `error`.
     * May be NULL: the service takes no parameters.
     */
    malv_mlaas_status (*configure)(void *service_state, void *vm_state, const void *parameters,
                                   uint64_t length, char *error, uint64_t error_capacity);

    /**
     * The VM is detached (it ended, deselected the service, or the service is being unloaded):
     * release `vm_state`. After this returns the VM's handle and ranges are invalid, so stop
     * the VM's background work here (bounded: preprocess waits for the batch it is writing;
     * the host's callbacks keep working until this returns). Cannot fail.
     */
    void (*detach)(void *service_state, void *vm_state);

    /** The last call: every VM was detached. Release `service_state` and stop every thread. */
    void (*unload)(void *service_state);

    /**
     * The guest withdrew its enable (MLAAS_DISABLE): stop the VM's work and free what it holds
     * (the VM stays attached; a later `configure` starts again). May be NULL (ABI 2).
     */
    void (*disable)(void *service_state, void *vm_state);

    /**
     * A guest's request to the service it enabled (MLAAS_REQUEST): `length` bytes in the
     * service's own format; write at most `response_capacity` bytes to `response` and return
     * how many, or return a negative status with one line in `error`. Never runs beside a
     * `configure` or `disable` of the same VM. May be NULL: the service takes no requests (ABI 2).
     */
    int64_t (*request)(void *service_state, void *vm_state, const void *request, uint64_t length,
                       void *response, uint64_t response_capacity, char *error, uint64_t error_capacity);

    /* Reserved: NULL (the host refuses a module that sets them). */
    const void *reserved[4];
} malv_mlaas_service;

/** The entry symbol's type. */
typedef const malv_mlaas_service *(*malv_mlaas_entry_fn)(void);

/** A short English name of a status ("out of range"), never NULL. */
const char *malv_mlaas_status_string(malv_mlaas_status status);

#ifdef __cplusplus
}
#endif

#endif /* MALV_MLAAS_H */
