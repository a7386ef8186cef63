// swift-tools-version:6.0
import PackageDescription

// Dependencies flow one way: malvvm → Hypervisor → CKVM / system libraries.
let package = Package(
    name: "malvvm",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "malvvm", targets: ["malvvm"]),
        .library(name: "Hypervisor", targets: ["Hypervisor"]),
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
    ]
)
