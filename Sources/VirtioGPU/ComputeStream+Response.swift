import VGPUCore

extension ComputeStreamError {
    /// The virtio-gpu response a submission refused for this reason gets.
    var response: VirtioGPUProtocol.Response {
        if case .invalidResource = self { return .errorInvalidResourceID }
        return .errorInvalidParameter
    }
}
