/// A kernel lowered to what a raw Vulkan program needs to replay it: shader file stem,
/// bindings (as positions in the caller's buffer list), push-constant words and the grid.
/// Package-internal: the benchmark harness hands these to the direct-Vulkan C program so
/// both dispatch exactly the same SPIR-V with exactly the same arguments.
package struct DispatchDescription: Hashable, Sendable {
    package var shader: String
    package var bindings: [Int]
    package var pushConstants: [UInt32]
    package var groupsX: UInt32
    package var groupsY: UInt32
}

extension Kernel {
    /// Validates against `buffers` (id → byte size) and lowers; `maxGroupsX` is the device's
    /// maxComputeWorkGroupCount[0]. Binding indices refer to `order`.
    package func dispatchDescriptions(buffers: [BufferID: Int], order: [BufferID],
                                      maxGroupsX: UInt32) throws(KernelValidationError) -> [DispatchDescription] {
        let operands = try validate(capacity: { buffers[$0] })
        return shaderDispatches(operands: operands, maxGroupsX: maxGroupsX).map { dispatch in
            DispatchDescription(shader: dispatch.shader.rawValue,
                                bindings: dispatch.bindings.map { id in order.firstIndex(of: id) ?? -1 },
                                pushConstants: dispatch.pushConstants, groupsX: dispatch.groups.x, groupsY: dispatch.groups.y)
        }
    }
}
