// swift-tools-version:6.0
import PackageDescription

// Dependencies flow one way (docs/architecture.md draws the graph):
//   malvvm → ControlAPI → VGPUAssembly → VirtioGPU, FullVGPU, GPUDaemon → VGPUCore → GPUHost
//   VirtioGPU, FullVGPU, GPUDaemon → Hypervisor → Platform, CKVM;  FullVGPU → GVMCS
//   malvvm → GPUBenchmarks → GPUHost (the `malvvm bench gpu` measurements)
//   malvvm, ControlAPI → MLaaS → CMLaaS (the service C ABI), Hypervisor (virtio-blk's read hook), Platform;
//   service modules → CMLaaS only
// The vGPU kinds (VirtioGPU, FullVGPU) never depend on each other; GPUDaemon serves para-vGPUs
// (VirtioGPU) and knows nothing of the full-vGPU; only VGPUAssembly knows every kind.
let package = Package(
    name: "malvvm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "malvvm", targets: ["malvvm"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
        .library(name: "GPUHost", targets: ["GPUHost"]),
        .library(name: "GVMCS", targets: ["GVMCS"]),
        .library(name: "VirtioGPU", targets: ["VirtioGPU"]),
        .library(name: "MLWorkloads", targets: ["MLWorkloads"]),
        .library(name: "GPUDaemon", targets: ["GPUDaemon"]),
        .library(name: "FullVGPU", targets: ["FullVGPU"]),
        .library(name: "VGPUCore", targets: ["VGPUCore"]),
        .library(name: "VGPUAssembly", targets: ["VGPUAssembly"]),
        .library(name: "MLaaS", targets: ["MLaaS"]),
        // MLaaS service modules (docs/mlaas.md): lib<name>.so beside the malvvm binary, loaded
        // at run time through the C ABI in Sources/CMLaaS/include/malv_mlaas.h.
        .library(name: "preprocess", type: .dynamic, targets: ["MLaaSPreprocess"]),
        .library(name: "prefetch", type: .dynamic, targets: ["MLaaSPrefetch"]),
        .library(name: "learned-slice", type: .dynamic, targets: ["MLaaSLearnedSlice"]),
        // Modules the MLaaS tests must refuse: no entry symbol; a future ABI version.
        .library(name: "mlaas-fixture-not-a-service", type: .dynamic, targets: ["MLaaSFixtureNotAService"]),
        .library(name: "mlaas-fixture-future-abi", type: .dynamic, targets: ["MLaaSFixtureFutureABI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The REST APIs' server and client code is generated from docs/api/*.yaml by
        // swift-openapi-generator (scripts/generate-api, committed under Sources/*OpenAPI);
        // these run it: the runtime, and its transports for Hummingbird and AsyncHTTPClient.
        .package(url: "https://github.com/apple/swift-openapi-runtime", from: "1.13.4"),
        .package(url: "https://github.com/hummingbird-project/swift-openapi-hummingbird", from: "2.1.0"),
        .package(url: "https://github.com/swift-server/swift-openapi-async-http-client", from: "1.5.0"),
    ],
    targets: [
        // Thin typed wrappers for the KVM ioctls and the kvm_run unions Swift cannot reach.
        .target(name: "CKVM"),
        // The primitives every module shares: threads, a lock with conditions, a serial worker,
        // the monotonic clock.
        .target(name: "CPlatform"),
        .target(name: "Platform", dependencies: ["CPlatform", "CSeccomp"]),
        .target(
            name: "Hypervisor",
            dependencies: [
                "CKVM",
                "Platform",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The physical GPU. Vulkan for compute; libdrm and libpci (through C wrappers for their
        // unions, a variadic call and a longjmp error handler) for the host's GPU inventory.
        // The pkg-config names must be exact ("drm" fails silently).
        .systemLibrary(name: "CVulkan", path: "Sources/CVulkan", pkgConfig: "vulkan",
                       providers: [.apt(["libvulkan-dev"])]),
        .systemLibrary(name: "CDRM", path: "Sources/CDRM", pkgConfig: "libdrm", providers: [.apt(["libdrm-dev"])]),
        .systemLibrary(name: "CPCI", path: "Sources/CPCI", pkgConfig: "libpci", providers: [.apt(["libpci-dev"])]),
        // The VMM's system-call filter (libseccomp), installed after set-up (docs/hardening.md).
        .target(name: "CSeccomp", linkerSettings: [.linkedLibrary("seccomp")]),
        .target(name: "CGPUInventory", dependencies: ["CDRM", "CPCI"], path: "Sources/CGPUInventory"),
        // Compute backends, the ML kernel library and the time-sliced scheduler. Shaders/*.comp
        // are compiled to SPIR-V by scripts/build-shaders into Generated/.
        .target(
            name: "GPUHost",
            dependencies: [
                "Platform",
                "CVulkan",
                "CGPUInventory",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            exclude: ["Shaders"],
            // Optimised in debug builds too: the CPU reference backend is the "GPU" of most
            // end-to-end tests, and unoptimised Swift kernels run ~30x slower.
            swiftSettings: [.swiftLanguageMode(.v5), .unsafeFlags(["-O"], .when(configuration: .debug))]
        ),

        // What every vGPU kind and the daemon share: the VGPU protocol and its lifecycle,
        // profiles, statistics, and the compute-stream codec both kinds carry.
        .target(name: "VGPUCore", dependencies: ["GPUHost"]),

        // The G-VMCS: a software model of full-vGPU virtualisation hardware (VT-x style): control
        // structure, field encodings, the gvm* instructions, entry checks, exits, the G-EPT.
        .target(name: "GVMCS", dependencies: ["Platform"]),
        // The para-vGPU: a virtio-gpu device whose context type is ML compute, each context a
        // client of the GPUHost scheduler. Uses the Hypervisor's virtio library.
        .target(
            name: "VirtioGPU",
            dependencies: [
                "Platform",
                "Hypervisor",
                "GPUHost",
                "VGPUCore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // The full-vGPU: a PCI GPU whose virtualisation is the G-VMCS model; the VMM is the
        // model's hypervisor. Kernel streams are the para-vGPU's format (VGPUCore's codec).
        .target(
            name: "FullVGPU",
            dependencies: [
                "Platform",
                "GVMCS",
                "Hypervisor",
                "GPUHost",
                "VGPUCore",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // SCM_RIGHTS descriptor passing (CMSG_* are macros Swift cannot call).
        .target(name: "CFDPassing"),
        // The GPU daemon: one process owning the GPU serves every VM's para-vGPUs over the
        // vgpu-user protocol (guest memory, doorbells and irqfds passed by SCM_RIGHTS), and the
        // VM side of that protocol (RemoteVGPU).
        .target(
            name: "GPUDaemon",
            dependencies: [
                "CFDPassing",
                "Platform",
                "Hypervisor",
                "GPUHost",
                "VGPUCore",
                "VirtioGPU",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // Builds every vGPU kind from its `--vgpu` specification and puts it on a machine, at
        // boot or by hot-plug: the one place that knows all the kinds.
        .target(
            name: "VGPUAssembly",
            dependencies: ["Hypervisor", "GPUHost", "VGPUCore", "VirtioGPU", "FullVGPU", "GPUDaemon"]
        ),

        // ML jobs run natively on GPUHost (the guest's test=train as a host process), for
        // `malvvm bench native` and scripts/bench-vgpu.
        .target(name: "MLWorkloads", dependencies: ["Platform", "GPUHost", "PreprocessDraws"], swiftSettings: [.swiftLanguageMode(.v5)]),

        // MLaaS: service modules loaded at run time (dlopen, from an operator-owned directory only)
        // through a versioned C ABI, and attached to the VMs that select them (docs/mlaas.md).
        .target(name: "CMLaaS"),
        .target(name: "MLaaS", dependencies: ["CMLaaS", "Hypervisor", "Platform", .product(name: "Logging", package: "swift-log")]),
        // The services, each a dynamic library product; they see the host only through the ABI.
        // What every Swift service module needs on the ABI's side; linked into each module.
        .target(name: "MLaaSServiceSupport", dependencies: ["CMLaaS"]),
        .target(name: "MLaaSPreprocess", dependencies: ["CMLaaS", "MLaaSServiceSupport", "PreprocessDraws"]),
        // The preprocess pipeline's shuffle and per-image draws, shared by the service and the
        // native CNN job (MLWorkloads), which must not link a service module.
        .target(name: "PreprocessDraws"),
        .target(name: "MLaaSPrefetch", dependencies: ["CMLaaS", "MLaaSServiceSupport"]),
        .target(name: "MLaaSLearnedSlice", dependencies: ["CMLaaS", "MLaaSServiceSupport"]),
        .target(name: "MLaaSFixtureNotAService", path: "Tests/MLaaSFixtures/NotAService"),
        .target(name: "MLaaSFixtureFutureABI", path: "Tests/MLaaSFixtures/FutureABI"),

        // The REST APIs' types, server and client, as swift-openapi-generator makes them from
        // docs/api/malvvm.yaml and docs/api/gpud.yaml: scripts/generate-api writes them, and they
        // are committed (the generator's build plugin would rebuild the generator in every clean
        // clone). One module a document, so the two documents' names cannot collide.
        .target(name: "MalvvmOpenAPI", dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
                exclude: ["openapi-generator-config.yaml"]),
        .target(name: "GPUDaemonOpenAPI", dependencies: [.product(name: "OpenAPIRuntime", package: "swift-openapi-runtime")],
                exclude: ["openapi-generator-config.yaml"]),
        // The REST control API every `malvvm run` serves on a Unix socket (docs/api/malvvm.yaml)
        // and the GPU daemon's (docs/api/gpud.yaml): the generated code's handlers, the VM
        // controller behind them, and the client the CLI's ps/vgpu/mlaas/gpud commands use.
        .target(
            name: "ControlAPI",
            dependencies: [
                "MalvvmOpenAPI",
                "GPUDaemonOpenAPI",
                "Platform",
                "Hypervisor",
                "GPUHost",
                "VGPUCore",
                "VGPUAssembly",
                "FullVGPU",
                "GPUDaemon",
                "MLaaS",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "OpenAPIRuntime", package: "swift-openapi-runtime"),
                .product(name: "OpenAPIHummingbird", package: "swift-openapi-hummingbird"),
                .product(name: "OpenAPIAsyncHTTPClient", package: "swift-openapi-async-http-client"),
            ]
        ),

        .executableTarget(
            name: "malvvm",
            dependencies: [
                "ControlAPI",
                "GPUDaemon",
                "Hypervisor",
                "GPUHost",
                "VGPUCore",
                "VGPUAssembly",
                "MLWorkloads",
                "GPUBenchmarks",
                "MLaaS",
                "Platform",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // GPUHost's benchmarks behind `malvvm bench gpu` (scripts/bench-gpu, scripts/gpu-check):
        // kernels against direct Vulkan, the scheduler's sharing, sgemm throughput.
        .target(name: "GPUBenchmarks", dependencies: ["GPUHost", "Platform"], swiftSettings: [.swiftLanguageMode(.v5)]),

        // Plays the virtio driver in device tests: lays out rings in guest memory, offers chains.
        .target(name: "VirtioTestSupport", dependencies: ["Hypervisor"], path: "Tests/VirtioTestSupport"),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor", "Platform", "VirtioTestSupport"]),
        .testTarget(name: "MalvvmCLITests", dependencies: ["Hypervisor"]),
        .testTarget(name: "ControlAPITests", dependencies: ["ControlAPI", "MalvvmOpenAPI", "VGPUCore", "VGPUAssembly", "GPUHost"]),
        .testTarget(name: "GPUDaemonTests", dependencies: ["GPUDaemon", "CKVM", "Hypervisor", "GPUHost", "VGPUCore"]),
        .testTarget(name: "GPUHostTests", dependencies: ["GPUHost", "Platform"], swiftSettings: [.swiftLanguageMode(.v5)]),
        .testTarget(name: "GVMCSTests", dependencies: ["GVMCS"]),
        .testTarget(name: "FullVGPUTests", dependencies: ["FullVGPU", "Hypervisor", "GPUHost", "VGPUCore"]),
        .testTarget(name: "MLWorkloadsTests", dependencies: ["MLWorkloads"]),
        // Fixtures/: C the agreement test builds with the host's gcc (ComputeStreamAgreementTests).
        .testTarget(name: "MLaaSTests", dependencies: ["MLaaS", "CMLaaS", "Hypervisor"]),
        .testTarget(name: "VirtioGPUTests",
                    dependencies: ["VirtioGPU", "VGPUCore", "Hypervisor", "Platform", "GPUHost", "VirtioTestSupport", .product(name: "Logging", package: "swift-log")],
                    exclude: ["Fixtures"],
                    swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)

// Fuzzing (scripts/fuzz; README "Hardening: fuzzing"). With MALVVM_FUZZ=1 in the environment
// the package also declares one libFuzzer executable per guest- or client-facing parser
// (Fuzz/<Target>/main.swift, on the driver in Fuzz/Support), and compiles every Swift module of
// ours with AddressSanitizer, libFuzzer's coverage instrumentation (`-sanitize=fuzzer` given to
// the frontend only, so the driver does not link libFuzzer's own main()) and -enable-testing
// (the targets reach internal entry points, such as a device's queue processing without a
// device thread, with @testable imports instead of widening the modules' API). Dependencies
// (swift-nio, Hummingbird, ...) are built as usual: ASan works with uninstrumented code, and
// their coverage is not what we fuzz. The executables link libclang_rt.fuzzer_no_main (path in
// MALVVM_FUZZ_RUNTIME) and call LLVMFuzzerRunDriver from their own main, which SwiftPM's
// renaming of an executable's entry point then keeps working.
// Without MALVVM_FUZZ nothing of this exists: plain `swift build`/`swift test` never compile
// the fuzz targets, so they cannot break them (scripts/test runs scripts/fuzz briefly, which
// keeps them compiling). scripts/fuzz builds in its own scratch path (.build-fuzz).
if Context.environment["MALVVM_FUZZ"] == "1" {
    let cTargets: Set<String> = ["CKVM", "CPlatform", "CVulkan", "CDRM", "CPCI", "CGPUInventory", "CFDPassing", "CSeccomp"]
    for target in package.targets where !cTargets.contains(target.name) && target.type == .regular {
        target.swiftSettings = (target.swiftSettings ?? []) + [
            .unsafeFlags(["-sanitize=address", "-Xfrontend", "-sanitize=fuzzer", "-enable-testing"]),
            .define("FUZZING"),
        ]
    }
    let runtime = Context.environment["MALVVM_FUZZ_RUNTIME"] ?? "libclang_rt.fuzzer_no_main-x86_64.a"
    let fuzzSettings: [SwiftSetting] = [
        .unsafeFlags(["-sanitize=address", "-Xfrontend", "-sanitize=fuzzer"]), .define("FUZZING"), .swiftLanguageMode(.v5),
    ]
    package.targets.append(.target(name: "FuzzSupport", path: "Fuzz/Support", swiftSettings: fuzzSettings))
    // scripts/fuzz names each by its directory: Fuzz/ELFLoader is `elf-loader`, built as FuzzELFLoader.
    let fuzzTargets: [(String, [Target.Dependency])] = [
        ("Virtqueue", ["Hypervisor"]),
        ("VirtioBlock", ["Hypervisor"]),
        ("VirtioGPU", ["VirtioGPU", "VGPUCore", "Hypervisor", "GPUHost", .product(name: "Logging", package: "swift-log")]),
        ("ComputeStream", ["VGPUCore", "GPUHost"]),
        ("FullVGPU", ["FullVGPU", "Hypervisor", "GPUHost", "VGPUCore", .product(name: "Logging", package: "swift-log")]),
        ("ELFLoader", ["Hypervisor"]),
        ("VGPUUser", ["GPUDaemon", "CFDPassing", "CKVM", "Hypervisor", "GPUHost", "VGPUCore"]),
        ("RESTBodies", ["ControlAPI", "MalvvmOpenAPI", "VGPUAssembly", "VGPUCore"]),
    ]
    for (name, dependencies) in fuzzTargets {
        package.targets.append(.executableTarget(
            name: "Fuzz\(name)", dependencies: ["FuzzSupport"] + dependencies, path: "Fuzz/\(name)",
            swiftSettings: fuzzSettings,
            linkerSettings: [.unsafeFlags(["-sanitize=address", "-Xlinker", "--whole-archive", "-Xlinker", runtime,
                                           "-Xlinker", "--no-whole-archive"]),
                             .linkedLibrary("stdc++")]))
    }
}
