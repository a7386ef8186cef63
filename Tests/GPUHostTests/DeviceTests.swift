@testable import GPUHost
import Logging
import Synchronization
import Testing

@Suite("Devices, selection, fallback and shaders")
struct DeviceTests {
    @Test("devices are listed with name, driver, ids and memory heaps", .enabled(if: Backends.hasVulkan))
    func listing() throws {
        let devices = try VulkanBackend.listDevices()
        #expect(!devices.isEmpty)
        for (position, device) in devices.enumerated() {
            #expect(device.index == position)
            #expect(!device.name.isEmpty)
            #expect(!device.memoryHeaps.isEmpty)
            #expect(device.memoryHeaps.allSatisfy { $0.size > 0 })
            #expect(device.summary.contains(device.name))
            #expect(device.maxComputeWorkGroupCount.count == 3)
        }
    }

    @Test("selection by index and by name substring", .enabled(if: Backends.hasVulkan))
    func selection() throws {
        let devices = try VulkanBackend.listDevices()
        let first = try #require(devices.first)
        let byIndex = try VulkanBackend(selector: .index(first.index))
        #expect(byIndex.device.name == first.name)
        let fragment = String(first.name.prefix(4)).uppercased()
        let byName = try VulkanBackend(selector: .nameContains(fragment))
        #expect(byName.device.name.uppercased().contains(fragment))
        #expect(throws: GPUError.self) { try VulkanBackend(selector: .index(devices.count)) }
        do {
            _ = try VulkanBackend(selector: .nameContains("no-such-gpu"))
            Issue.record("a missing device was selected")
        } catch {
            guard case let .deviceNotFound(_, available) = error else {
                Issue.record("unexpected \(error)")
                return
            }
            #expect(available.count == devices.count)
        }
    }

    @Test("PCI addresses print as the kernel does")
    func pciAddress() {
        #expect(PCIAddress(domain: 0, bus: 0x65, device: 0, function: 1).description == "0000:65:00.1")
    }

    @Test("automatic selection falls back to the CPU reference and says so")
    func fallback() throws {
        let log = LogCapture()
        let logger = Logger(label: "test") { _ in log }
        let backend = try BackendFactory.make(.automatic, logger: logger) { (_, _) throws(GPUError) -> any ComputeBackend in
            throw GPUError.vulkanUnavailable(reason: "no Vulkan driver (VK_ERROR_INCOMPATIBLE_DRIVER)")
        }
        #expect(backend.kind == .cpuReference)
        #expect(log.messages.contains { $0.contains("falling back to the CPU reference backend") })
    }

    @Test("an explicit device request that cannot be met is an error, not a fallback")
    func noSilentFallback() {
        #expect(throws: GPUError.self) {
            try BackendFactory.make(.nameContains("x"), logger: Logger(label: "test")) { (selector, _) throws(GPUError) -> any ComputeBackend in
                throw GPUError.deviceNotFound(selector: selector, available: [])
            }
        }
        #expect(throws: GPUError.self) {
            try BackendFactory.make(.automatic, logger: Logger(label: "test")) { (_, _) throws(GPUError) -> any ComputeBackend in
                throw GPUError.vulkan(call: "vkCreateDevice", result: VulkanResult(rawValue: -4))
            }
        }
    }

    @Test("every shader file was compiled into the binary as valid SPIR-V")
    func shadersEmbedded() {
        #expect(Set(GeneratedShaders.byName.keys) == Set(ShaderKernel.allCases.map(\.rawValue)))
        for shader in ShaderKernel.allCases {
            let words = shader.spirv ?? []
            #expect(words.first == 0x0723_0203, "\(shader.rawValue) lacks the SPIR-V magic number")
            #expect(words.count > 5)
        }
    }

    @Test("VkResult codes are named in errors")
    func resultNames() {
        #expect(GPUError.vulkan(call: "vkQueueSubmit", result: VulkanResult(rawValue: -4)).description
            == "vkQueueSubmit failed: VK_ERROR_DEVICE_LOST")
    }
}

/// A swift-log handler that keeps messages for assertions.
final class LogCapture: LogHandler, @unchecked Sendable {
    private let storage = Mutex<[String]>([])
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    var messages: [String] { storage.withLock { $0 } }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        storage.withLock { $0.append(event.message.description) }
    }
}
