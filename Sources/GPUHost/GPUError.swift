/// A `VkResult` kept as its raw code, so callers can match on it and logs can name it
/// without this module's public API depending on the C headers.
public struct VulkanResult: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: Int32

    public init(rawValue: Int32) {
        self.rawValue = rawValue
    }

    public var description: String {
        switch rawValue {
        case 0: return "VK_SUCCESS"
        case 1: return "VK_NOT_READY"
        case 2: return "VK_TIMEOUT"
        case 5: return "VK_INCOMPLETE"
        case -1: return "VK_ERROR_OUT_OF_HOST_MEMORY"
        case -2: return "VK_ERROR_OUT_OF_DEVICE_MEMORY"
        case -3: return "VK_ERROR_INITIALIZATION_FAILED"
        case -4: return "VK_ERROR_DEVICE_LOST"
        case -5: return "VK_ERROR_MEMORY_MAP_FAILED"
        case -6: return "VK_ERROR_LAYER_NOT_PRESENT"
        case -7: return "VK_ERROR_EXTENSION_NOT_PRESENT"
        case -8: return "VK_ERROR_FEATURE_NOT_PRESENT"
        case -9: return "VK_ERROR_INCOMPATIBLE_DRIVER"
        case -10: return "VK_ERROR_TOO_MANY_OBJECTS"
        case -11: return "VK_ERROR_FORMAT_NOT_SUPPORTED"
        case -12: return "VK_ERROR_FRAGMENTED_POOL"
        case -13: return "VK_ERROR_UNKNOWN"
        case -1_000_069_000: return "VK_ERROR_OUT_OF_POOL_MEMORY"
        case -1_000_012_000: return "VK_ERROR_INVALID_SHADER_NV"
        default: return "VkResult(\(rawValue))"
        }
    }
}

/// Every failure that crosses the GPUHost boundary. Nothing in this module traps on bad input
/// or a failing driver call; it comes back as one of these.
public enum GPUError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A Vulkan call returned an error code.
    case vulkan(call: String, result: VulkanResult)
    /// Vulkan itself cannot be used here (no loader, no driver, no compute-capable device).
    case vulkanUnavailable(reason: String)
    /// The selector named a device that is not present; `available` lists what is.
    case deviceNotFound(selector: DeviceSelector, available: [String])
    /// The device exists but lacks something the backend needs.
    case unsupportedDevice(name: String, reason: String)
    case noSuitableMemoryType(placement: MemoryPlacement)
    case shaderMissing(kernel: String)
    /// Kernel `index` of a batch failed validation; nothing of the batch was submitted.
    case invalidKernel(index: Int, KernelValidationError)
    /// Upload or download `index` of a batch is invalid; nothing of the batch was submitted.
    case invalidTransfer(HostTransfer.Direction, index: Int, HostTransferError)
    case unknownBuffer(BufferID)
    case invalidBufferSize(requested: Int, limit: Int)
    case bufferAccessOutOfBounds(BufferID, byteOffset: Int, byteCount: Int, capacity: Int)
    case unknownSubmission(SubmissionID)
    case timedOut(SubmissionID)

    public var description: String {
        switch self {
        case let .vulkan(call, result):
            return "\(call) failed: \(result)"
        case let .vulkanUnavailable(reason):
            return "Vulkan unavailable: \(reason)"
        case let .deviceNotFound(selector, available):
            return "no Vulkan device matches \(selector); available: \(available.isEmpty ? "none" : available.joined(separator: ", "))"
        case let .unsupportedDevice(name, reason):
            return "device \(name) unsupported: \(reason)"
        case let .noSuitableMemoryType(placement):
            return "no memory type for \(placement) placement"
        case let .shaderMissing(kernel):
            return "no SPIR-V for kernel \(kernel) (run scripts/build-shaders)"
        case let .invalidKernel(index, error):
            return "kernel \(index) of the batch is invalid: \(error)"
        case let .invalidTransfer(direction, index, error):
            return "\(direction) \(index) of the batch is invalid: \(error)"
        case let .unknownBuffer(id):
            return "unknown \(id)"
        case let .invalidBufferSize(requested, limit):
            return "buffer size \(requested) bytes outside 1...\(limit)"
        case let .bufferAccessOutOfBounds(id, offset, count, capacity):
            return "access of \(count) bytes at \(offset) outside \(id) (\(capacity) bytes)"
        case let .unknownSubmission(id):
            return "unknown submission \(id.rawValue)"
        case let .timedOut(id):
            return "submission \(id.rawValue) did not complete in time"
        }
    }
}
