// swift-tools-version:6.0
import PackageDescription

// Dependencies flow one way: malvvm → Hypervisor, (later VirtioGPU, GVMCS) → GPUHost →
// CKVM / CVulkan / system libraries.
let package = Package(
    name: "malvvm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "malvvm", targets: ["malvvm"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
        .library(name: "GPUHost", targets: ["GPUHost"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
    ],
    targets: [
        // Thin typed wrappers for the KVM ioctls and the kvm_run unions Swift cannot reach.
        .target(name: "CKVM"),
        .target(
            name: "Hypervisor",
            dependencies: [
                "CKVM",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .systemLibrary(name: "CVulkan", path: "Sources/CVulkan", pkgConfig: "vulkan",
                       providers: [.apt(["libvulkan-dev"])]),
        // The physical GPU: compute backends (Vulkan, CPU reference) and the ML kernel library.
        // Shaders/*.comp are compiled to SPIR-V by scripts/build-shaders into Generated/.
        .target(
            name: "GPUHost",
            dependencies: ["CVulkan", .product(name: "Logging", package: "swift-log")],
            exclude: ["Shaders"],
            swiftSettings: [.swiftLanguageMode(.v5)]
        ),
        .executableTarget(
            name: "malvvm",
            dependencies: [
                "Hypervisor",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(name: "HypervisorTests", dependencies: ["Hypervisor"]),
        .testTarget(name: "MalvvmCLITests", dependencies: ["Hypervisor"]),
        .testTarget(name: "GPUHostTests", dependencies: ["GPUHost"], swiftSettings: [.swiftLanguageMode(.v5)]),
    ]
)
