import CVulkan
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The Vulkan compute backend: owns one device and its compute queue, the buffers clients
/// name by id, a cache of kernel pipelines, and the submission slots batches run in.
///
/// Sendable because every mutable field lives in `state` behind a mutex, which also
/// serialises queue access as Vulkan requires. The calls made outside it (fence waits and
/// status, query results, memcpy into persistently mapped memory) need no external
/// synchronisation per the Vulkan specification.
public final class VulkanBackend: ComputeBackend, @unchecked Sendable {
    private final class InFlight {
        let slot: VulkanSubmissionSlot
        /// Keeps every buffer the batch touches alive until it retires, even if its id is
        /// destroyed meanwhile.
        let buffers: [VulkanBuffer]
        let kernelCount: Int
        let dispatchCount: Int
        let barrierCount: Int

        init(slot: VulkanSubmissionSlot, buffers: [VulkanBuffer], kernelCount: Int, dispatchCount: Int, barrierCount: Int) {
            self.slot = slot
            self.buffers = buffers
            self.kernelCount = kernelCount
            self.dispatchCount = dispatchCount
            self.barrierCount = barrierCount
        }
    }

    private struct State {
        var buffers = BufferTable<VulkanBuffer>()
        var inFlight: [SubmissionID: InFlight] = [:]
        var nextSubmission: UInt64 = 1
        var freeSlots: [VulkanSubmissionSlot] = []
        var pipelines: [ShaderKernel: VulkanPipeline] = [:]
        /// For staging copies and fills; used only under the lock, and waited for in place.
        var transferSlot: VulkanSubmissionSlot?
    }

    public let kind = BackendKind.vulkan
    public var device: DeviceInfo { vk.physical.info }
    private let vk: VulkanDevice
    private let logger: Logger
    private let state = Mutex(State())

    /// Every Vulkan device on this host, in enumeration order (the order `.index` refers to).
    public static func listDevices() throws(GPUError) -> [DeviceInfo] {
        let instance = try VulkanInstance()
        return try instance.physicalDevices().enumerated().map { index, handle in
            VulkanPhysicalDevice(handle: handle, index: index, instanceAPIVersion: instance.apiVersion).info
        }
    }

    public init(selector: DeviceSelector = .automatic,
                logger: Logger = Logger(label: "malvvm.gpuhost")) throws(GPUError) {
        let instance = try VulkanInstance()
        let devices = try instance.physicalDevices().enumerated().map { index, handle in
            VulkanPhysicalDevice(handle: handle, index: index, instanceAPIVersion: instance.apiVersion)
        }
        let chosen = try Self.select(selector, from: devices)
        guard chosen.computeQueueFamily != nil else {
            throw .unsupportedDevice(name: chosen.info.name, reason: "no compute queue family")
        }
        vk = try VulkanDevice(instance: instance, physical: chosen)
        self.logger = logger
        logger.info("GPUHost: Vulkan compute on \(chosen.info.summary)")
        if chosen.info.timestampPeriod == nil {
            logger.warning("GPUHost: the compute queue of \(chosen.info.name) has no timestamps; batch GPU time will be unavailable")
        }
    }

    deinit {
        // Batches nobody waited for may still be running against buffers and slots that are
        // about to be destroyed with `state`.
        vkDeviceWaitIdle(vk.handle)
    }

    static func select(_ selector: DeviceSelector, from devices: [VulkanPhysicalDevice]) throws(GPUError) -> VulkanPhysicalDevice {
        let usable = devices.filter { $0.computeQueueFamily != nil }
        let names = devices.map { "[\($0.info.index)] \($0.info.name)" }
        let match: VulkanPhysicalDevice?
        switch selector {
        case .automatic:
            func rank(_ type: DeviceType) -> Int {
                switch type {
                case .discreteGPU: return 0
                case .integratedGPU: return 1
                case .virtualGPU: return 2
                case .cpu: return 3
                case .other: return 4
                }
            }
            match = usable.min { lhs, rhs in
                let (l, r) = (rank(lhs.info.type), rank(rhs.info.type))
                return l != r ? l < r : lhs.info.index < rhs.info.index
            }
        case let .index(index):
            match = devices.first { $0.info.index == index }
        case let .nameContains(text):
            let needle = text.lowercased()
            match = devices.first { !needle.isEmpty && $0.info.name.lowercased().contains(needle) }
        case .cpuReference:
            match = nil
        }
        guard let match else { throw .deviceNotFound(selector: selector, available: names) }
        return match
    }

    // MARK: Buffers

    public func createBuffer(byteCount: Int, placement: MemoryPlacement) throws(GPUError) -> BufferID {
        // One storage-buffer binding must be able to cover the whole buffer.
        let limit = Int(min(device.maxStorageBufferRange, UInt64(Int.max)))
        guard byteCount > 0, byteCount <= limit else {
            throw .invalidBufferSize(requested: byteCount, limit: limit)
        }
        let buffer = try VulkanBuffer(device: vk, byteCount: byteCount, placement: placement)
        return try state.withLock { (state: inout State) throws(GPUError) -> BufferID in
            // Fresh memory may hold another process's data; clients only ever see zeros.
            if let mapped = buffer.mapped {
                memset(mapped, 0, byteCount)
            } else {
                try transfer(&state) { commandBuffer in
                    vkCmdFillBuffer(commandBuffer, buffer.handle, 0, malv_vk_whole_size(), 0)
                }
            }
            return state.buffers.insert(buffer)
        }
    }

    public func destroyBuffer(_ buffer: BufferID) throws(GPUError) {
        _ = try state.withLock { (state: inout State) throws(GPUError) in try state.buffers.remove(buffer) }
    }

    public func capacity(of buffer: BufferID) -> Int? {
        state.withLock { $0.buffers[buffer]?.byteCount }
    }

    public func write(_ buffer: BufferID, byteOffset: Int, from bytes: UnsafeRawBufferPointer) throws(GPUError) {
        guard let source = bytes.baseAddress, bytes.count > 0 else {
            _ = try lookup(buffer, byteOffset: byteOffset, byteCount: 0)
            return
        }
        let target = try lookup(buffer, byteOffset: byteOffset, byteCount: bytes.count)
        if let mapped = target.mapped {
            memcpy(mapped + byteOffset, source, bytes.count)
            return
        }
        let staging = try VulkanBuffer(device: vk, byteCount: bytes.count, placement: .hostVisible)
        guard let stagingMemory = staging.mapped else { throw .noSuitableMemoryType(placement: .hostVisible) }
        memcpy(stagingMemory, source, bytes.count)
        try state.withLock { (state: inout State) throws(GPUError) in
            try transfer(&state) { commandBuffer in
                var region = VkBufferCopy(srcOffset: 0, dstOffset: VkDeviceSize(byteOffset), size: VkDeviceSize(bytes.count))
                vkCmdCopyBuffer(commandBuffer, staging.handle, target.handle, 1, &region)
            }
        }
    }

    public func read(_ buffer: BufferID, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws(GPUError) {
        guard let destination = bytes.baseAddress, bytes.count > 0 else {
            _ = try lookup(buffer, byteOffset: byteOffset, byteCount: 0)
            return
        }
        let source = try lookup(buffer, byteOffset: byteOffset, byteCount: bytes.count)
        if let mapped = source.mapped {
            memcpy(destination, mapped + byteOffset, bytes.count)
            return
        }
        let staging = try VulkanBuffer(device: vk, byteCount: bytes.count, placement: .hostVisible)
        guard let stagingMemory = staging.mapped else { throw .noSuitableMemoryType(placement: .hostVisible) }
        try state.withLock { (state: inout State) throws(GPUError) in
            try transfer(&state) { commandBuffer in
                var region = VkBufferCopy(srcOffset: VkDeviceSize(byteOffset), dstOffset: 0, size: VkDeviceSize(bytes.count))
                vkCmdCopyBuffer(commandBuffer, source.handle, staging.handle, 1, &region)
            }
        }
        memcpy(destination, stagingMemory, bytes.count)
    }

    private func lookup(_ buffer: BufferID, byteOffset: Int, byteCount: Int) throws(GPUError) -> VulkanBuffer {
        guard let target = state.withLock({ $0.buffers[buffer] }) else { throw .unknownBuffer(buffer) }
        let (end, overflow) = byteOffset.addingReportingOverflow(byteCount)
        guard byteOffset >= 0, byteCount >= 0, !overflow, end <= target.byteCount else {
            throw .bufferAccessOutOfBounds(buffer, byteOffset: byteOffset, byteCount: byteCount,
                                           capacity: target.byteCount)
        }
        return target
    }

    /// Records `body` between the batch entry/exit barriers on the transfer slot, submits it
    /// and waits. Called with the lock held (it uses the queue).
    private func transfer(_ state: inout State, _ body: (VkCommandBuffer) -> Void) throws(GPUError) {
        let slot: VulkanSubmissionSlot
        if let existing = state.transferSlot {
            slot = existing
        } else {
            slot = try VulkanSubmissionSlot(device: vk, timestamps: false)
            state.transferSlot = slot
        }
        try slot.begin(dispatches: 0)
        VulkanCommands.enterBatch(slot.commandBuffer)
        body(slot.commandBuffer)
        VulkanCommands.leaveBatch(slot.commandBuffer)
        try vkCheck(vkEndCommandBuffer(slot.commandBuffer), "vkEndCommandBuffer")
        try queueSubmit(slot)
        try vkCheck(vkWaitForFences(vk.handle, 1, [slot.fence], VkBool32(VK_TRUE), .max), "vkWaitForFences")
    }

    private func queueSubmit(_ slot: VulkanSubmissionSlot) throws(GPUError) {
        var commandBuffer: VkCommandBuffer? = slot.commandBuffer
        let result = withUnsafePointer(to: &commandBuffer) { pointer in
            var info = VkSubmitInfo()
            info.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            info.commandBufferCount = 1
            info.pCommandBuffers = pointer
            return vkQueueSubmit(vk.queue, 1, &info, slot.fence)
        }
        try vkCheck(result, "vkQueueSubmit")
    }

    // MARK: Batches

    public func submit(_ batch: CommandBatch) throws(GPUError) -> SubmissionID {
        try state.withLock { (state: inout State) throws(GPUError) -> SubmissionID in
            let buffers = state.buffers
            let operandLists = try batch.validate(capacity: { buffers[$0]?.byteCount })
            var dispatches: [ShaderDispatch] = []
            for (kernel, operands) in zip(batch.kernels, operandLists) {
                dispatches += kernel.shaderDispatches(operands: operands, maxGroupsX: device.maxComputeWorkGroupCount.first ?? 65535)
            }
            for dispatch in dispatches where state.pipelines[dispatch.shader] == nil {
                state.pipelines[dispatch.shader] = try VulkanPipeline(device: vk, shader: dispatch.shader)
            }
            let slot: VulkanSubmissionSlot
            if let recycled = state.freeSlots.popLast() {
                slot = recycled
            } else {
                slot = try VulkanSubmissionSlot(device: vk, timestamps: device.timestampPeriod != nil)
            }
            let barrierCount: Int
            do throws(GPUError) {
                barrierCount = try record(dispatches, into: slot, buffers: buffers.byID, pipelines: state.pipelines)
                try queueSubmit(slot)
            } catch {
                // Nothing was queued: the slot is reusable (begin() resets it).
                state.freeSlots.append(slot)
                throw error
            }
            var used: [BufferID: VulkanBuffer] = [:]
            for dispatch in dispatches {
                for id in dispatch.bindings { used[id] = buffers[id] }
            }
            let id = SubmissionID(rawValue: state.nextSubmission)
            state.nextSubmission += 1
            state.inFlight[id] = InFlight(slot: slot, buffers: Array(used.values), kernelCount: batch.kernels.count,
                                          dispatchCount: dispatches.count, barrierCount: barrierCount)
            return id
        }
    }

    /// Records the batch; returns the number of barriers placed between dispatches.
    private func record(_ dispatches: [ShaderDispatch], into slot: VulkanSubmissionSlot,
                        buffers: [BufferID: VulkanBuffer], pipelines: [ShaderKernel: VulkanPipeline]) throws(GPUError) -> Int {
        try slot.begin(dispatches: dispatches.count)
        let commandBuffer = slot.commandBuffer
        if let queryPool = slot.queryPool {
            vkCmdResetQueryPool(commandBuffer, queryPool, 0, 2)
        }
        VulkanCommands.enterBatch(commandBuffer)
        // BOTTOM_OF_PIPE: written once everything before it on the queue has finished, i.e.
        // when this batch can start; the closing stamp when this batch has finished.
        if let queryPool = slot.queryPool {
            vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queryPool, 0)
        }
        var planner = BarrierPlanner()
        var barriers = 0
        var boundShader: ShaderKernel?
        for dispatch in dispatches {
            guard let pipeline = pipelines[dispatch.shader] else { throw .shaderMissing(kernel: dispatch.shader.rawValue) }
            if planner.admit(dispatch.accesses) {
                VulkanCommands.computeToCompute(commandBuffer)
                barriers += 1
            }
            if boundShader != dispatch.shader {
                vkCmdBindPipeline(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.pipeline)
                boundShader = dispatch.shader
            }
            var set: VkDescriptorSet? = try slot.allocateDescriptorSet(layout: pipeline.setLayout)
            var infos: [VkDescriptorBufferInfo] = []
            for id in dispatch.bindings {
                guard let buffer = buffers[id] else { throw .unknownBuffer(id) }
                infos.append(VkDescriptorBufferInfo(buffer: buffer.handle, offset: 0, range: malv_vk_whole_size()))
            }
            infos.withUnsafeBufferPointer { infoPointer in
                var writes = (0 ..< infoPointer.count).map { index in
                    var write = VkWriteDescriptorSet()
                    write.sType = VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET
                    write.dstSet = set
                    write.dstBinding = UInt32(index)
                    write.descriptorCount = 1
                    write.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
                    write.pBufferInfo = infoPointer.baseAddress.map { $0 + index }
                    return write
                }
                vkUpdateDescriptorSets(vk.handle, UInt32(writes.count), &writes, 0, nil)
            }
            vkCmdBindDescriptorSets(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout, 0, 1, &set, 0, nil)
            dispatch.pushConstants.withUnsafeBytes { raw in
                vkCmdPushConstants(commandBuffer, pipeline.layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0,
                                   UInt32(raw.count), raw.baseAddress)
            }
            vkCmdDispatch(commandBuffer, dispatch.groups.x, dispatch.groups.y, 1)
        }
        if let queryPool = slot.queryPool {
            vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queryPool, 1)
        }
        VulkanCommands.leaveBatch(commandBuffer)
        try vkCheck(vkEndCommandBuffer(commandBuffer), "vkEndCommandBuffer")
        return barriers
    }

    public func isComplete(_ submission: SubmissionID) throws(GPUError) -> Bool {
        guard let flight = state.withLock({ $0.inFlight[submission] }) else { throw .unknownSubmission(submission) }
        let status = vkGetFenceStatus(vk.handle, flight.slot.fence)
        if status == VK_NOT_READY { return false }
        try vkCheck(status, "vkGetFenceStatus")
        return true
    }

    public func wait(_ submission: SubmissionID, timeoutNanoseconds: UInt64) throws(GPUError) -> BatchCompletion {
        guard let flight = state.withLock({ $0.inFlight[submission] }) else { throw .unknownSubmission(submission) }
        let waited = vkWaitForFences(vk.handle, 1, [flight.slot.fence], VkBool32(VK_TRUE), timeoutNanoseconds)
        if waited == VK_TIMEOUT { throw .timedOut(submission) }
        try vkCheck(waited, "vkWaitForFences")
        // Claim the retirement before touching the slot's queries, so a second waiter cannot
        // see the slot recycled under it.
        let claimed = state.withLock { $0.inFlight.removeValue(forKey: submission) != nil }
        guard claimed else { throw .unknownSubmission(submission) }
        defer { state.withLock { $0.freeSlots.append(flight.slot) } }

        var nanoseconds: UInt64?
        if let queryPool = flight.slot.queryPool, let period = device.timestampPeriod {
            var stamps: [UInt64] = [0, 0]
            let result = stamps.withUnsafeMutableBytes { raw in
                vkGetQueryPoolResults(vk.handle, queryPool, 0, 2, raw.count, raw.baseAddress, 8,
                                      VK_QUERY_RESULT_64_BIT.rawValue | VK_QUERY_RESULT_WAIT_BIT.rawValue)
            }
            try vkCheck(result, "vkGetQueryPoolResults")
            let bits = vk.physical.timestampValidBits
            let mask: UInt64 = bits >= 64 ? .max : (1 << UInt64(bits)) - 1
            // Masked subtraction handles a counter that wrapped between the two stamps.
            let ticks = (stamps[1] &- stamps[0]) & mask
            nanoseconds = UInt64((Double(ticks) * period).rounded())
        }
        return BatchCompletion(
            submission: submission, kernelCount: flight.kernelCount, dispatchCount: flight.dispatchCount,
            barrierCount: flight.barrierCount, executionNanoseconds: nanoseconds,
            timing: nanoseconds == nil ? .unavailable : .deviceTimestamps)
    }
}
