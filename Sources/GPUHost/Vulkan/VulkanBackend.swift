import CVulkan
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
import Platform
#endif

/// The Vulkan compute backend: owns one device and its compute queue, the buffers clients
/// name by id, a cache of kernel pipelines, and the submission slots batches run in.
///
/// Host transfers: a batch's uploads and downloads are recorded into the batch's own command
/// buffer (staging → buffer before the dispatches, buffer → staging after them) through the
/// slot's persistent staging memory, so a batch with host data is still one queue submission
/// and one fence wait, and allocates nothing once its slot's staging is big enough. Buffers
/// the host can map (`VulkanBuffer.mapped`) skip staging: uploads are a memcpy at submit,
/// downloads a memcpy at wait.
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
        /// Likewise the imported host memory its device copies go through.
        let imports: [VulkanImportedHostMemory]
        let kernelCount: Int
        let dispatchCount: Int
        let barrierCount: Int
        /// The memcpys `wait` makes once the fence has signalled: out of mapped buffers or
        /// the slot's staging, into the batch's download destinations.
        let downloads: [HostCopy]
        let uploadNanoseconds: UInt64
        let submitNanoseconds: UInt64
        let replayed: Bool
        let zeroCopyBytes: UInt64

        init(slot: VulkanSubmissionSlot, buffers: [VulkanBuffer], imports: [VulkanImportedHostMemory], kernelCount: Int,
             dispatchCount: Int, barrierCount: Int, downloads: [HostCopy], uploadNanoseconds: UInt64,
             submitNanoseconds: UInt64, replayed: Bool, zeroCopyBytes: UInt64) {
            self.slot = slot
            self.buffers = buffers
            self.imports = imports
            self.zeroCopyBytes = zeroCopyBytes
            self.kernelCount = kernelCount
            self.dispatchCount = dispatchCount
            self.barrierCount = barrierCount
            self.downloads = downloads
            self.uploadNanoseconds = uploadNanoseconds
            self.submitNanoseconds = submitNanoseconds
            self.replayed = replayed
        }
    }

    /// One host-side memcpy of a transfer.
    private struct HostCopy {
        let destination: UnsafeMutableRawPointer
        let source: UnsafeRawPointer
        let count: Int
    }

    /// One transfer the queue copies through staging.
    private struct StagedCopy {
        let id: BufferID
        let buffer: VulkanBuffer
        let bufferOffset: Int
        let stagingOffset: Int
        let host: UnsafeHostBytes

        var shape: VulkanRecording.CopyShape {
            VulkanRecording.CopyShape(buffer: id, bufferOffset: bufferOffset, stagingOffset: stagingOffset, count: host.count)
        }
    }

    /// One transfer the device copies straight between a buffer and imported host memory.
    private struct ImportedCopy {
        let id: BufferID
        let buffer: VulkanBuffer
        let bufferOffset: Int
        let source: VulkanImportedHostMemory
        let importOffset: Int
        let count: Int

        var shape: VulkanRecording.ImportedCopyShape {
            VulkanRecording.ImportedCopyShape(buffer: id, bufferOffset: bufferOffset, importSerial: source.serial,
                                              importOffset: importOffset, count: count)
        }
    }

    /// A copy region as recorded: between a batch's buffer and a transfer buffer (staging or
    /// imported host memory).
    private struct DeviceCopy {
        let buffer: VulkanBuffer
        let bufferOffset: Int
        let other: VkBuffer
        let otherOffset: Int
        let count: Int
    }

    /// A batch's transfers, split by how each is served.
    private struct TransferPlan {
        enum DownloadSource {
            case mapped(UnsafeRawPointer)
            /// Known once the slot's staging memory is reserved.
            case staging(offset: Int)
        }

        var directUploads: [HostCopy] = []
        var stagedUploads: [StagedCopy] = []
        var stagedDownloads: [StagedCopy] = []
        var importedUploads: [ImportedCopy] = []
        var importedDownloads: [ImportedCopy] = []
        /// Every download, in the batch's order (destinations may overlap).
        var downloads: [(destination: UnsafeMutableRawPointer, source: DownloadSource, count: Int)] = []
        var stagingBytes = 0
        /// The buffers the transfers touch, kept alive until the batch retires.
        var buffers: [VulkanBuffer] = []

        /// The imports the batch copies through, each once (a VM has one or two RAM regions).
        /// Needed only when recording: a replay's recording already holds them.
        var imports: [VulkanImportedHostMemory] {
            var distinct: [VulkanImportedHostMemory] = []
            for copy in importedUploads where !distinct.contains(where: { $0 === copy.source }) { distinct.append(copy.source) }
            for copy in importedDownloads where !distinct.contains(where: { $0 === copy.source }) { distinct.append(copy.source) }
            return distinct
        }

        var zeroCopyBytes: UInt64 {
            UInt64(importedUploads.reduce(0) { $0 + $1.count } + importedDownloads.reduce(0) { $0 + $1.count })
        }

        /// The copy regions to record before the dispatches (uploads) and after them
        /// (downloads), staged ones against `staging`.
        func deviceCopies(staging: VkBuffer?) -> (uploads: [DeviceCopy], downloads: [DeviceCopy]) {
            func staged(_ copies: [StagedCopy]) -> [DeviceCopy] {
                guard let staging else { return [] }
                return copies.map {
                    DeviceCopy(buffer: $0.buffer, bufferOffset: $0.bufferOffset, other: staging, otherOffset: $0.stagingOffset,
                               count: $0.host.count)
                }
            }
            func imported(_ copies: [ImportedCopy]) -> [DeviceCopy] {
                copies.map {
                    DeviceCopy(buffer: $0.buffer, bufferOffset: $0.bufferOffset, other: $0.source.handle,
                               otherOffset: $0.importOffset, count: $0.count)
                }
            }
            return (staged(stagedUploads) + imported(importedUploads), staged(stagedDownloads) + imported(importedDownloads))
        }

        /// The memcpys `wait` makes, with staged sources resolved against `staging`.
        func downloadCopies(staging: UnsafeMutableRawPointer?) -> [HostCopy] {
            downloads.compactMap { download in
                switch download.source {
                case let .mapped(source):
                    return HostCopy(destination: download.destination, source: source, count: download.count)
                case let .staging(offset):
                    guard let staging else { return nil }
                    return HostCopy(destination: download.destination, source: UnsafeRawPointer(staging + offset),
                                    count: download.count)
                }
            }
        }
    }

    private struct State {
        var buffers = BufferTable<VulkanBuffer>()
        var inFlight: [SubmissionID: InFlight] = [:]
        var nextSubmission: UInt64 = 1
        var freeSlots: [VulkanSubmissionSlot] = []
        /// Buffers destroyed so far (see `VulkanSubmissionSlot.begin`).
        var bufferGeneration: UInt64 = 0
        /// Submission slots made so far (free, in flight or the standalone transfer slot's
        /// excluded).
        var slotCount = 0
        /// The kernel lists submitted lately, oldest first: one seen again is a repeating
        /// batch whose recording earns a slot (`takeSlot`).
        var recentKernelLists: [KernelListIdentity] = []
        var pipelines: [ShaderKernel: VulkanPipeline] = [:]
        /// Host memory shared by clients and imported, with how many shares name each.
        var imports: [(memory: VulkanImportedHostMemory, shares: Int)] = []
        var nextImportSerial: UInt64 = 1
        /// For standalone `write`/`read` copies and fills; used only under the lock, and
        /// waited for in place. Its staging memory (`slot.staging`) persists between calls.
        var transferSlot: VulkanSubmissionSlot?
    }

    public let kind = BackendKind.vulkan
    public var device: DeviceInfo { vk.physical.info }
    public let options: VulkanBackendOptions
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

    public init(selector: DeviceSelector = .automatic, options: VulkanBackendOptions = VulkanBackendOptions(),
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
        self.options = options
        self.logger = logger
        logger.info("GPUHost: Vulkan compute on \(chosen.info.summary)")
        if options.staging == .always {
            logger.info("GPUHost: host transfers to device-local buffers go through staging (\(VulkanBackendOptions.stagingEnvironmentVariable)=always)")
        }
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
            if let mapped = hostPointer(buffer) {
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
        _ = try state.withLock { (state: inout State) throws(GPUError) in
            // Cached descriptor sets may name it: every slot drops its cache at its next batch.
            state.bufferGeneration &+= 1
            return try state.buffers.remove(buffer)
        }
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
        if let mapped = hostPointer(target) {
            memcpy(mapped + byteOffset, source, bytes.count)
            return
        }
        try state.withLock { (state: inout State) throws(GPUError) in
            let slot = try transferSlot(&state)
            var done = 0
            while done < bytes.count {
                let piece = min(bytes.count - done, options.standaloneStagingLimit)
                let staging = try slot.staging.reserve(piece)
                memcpy(staging.mapped, source + done, piece)
                try transfer(&state) { commandBuffer in
                    var region = VkBufferCopy(srcOffset: 0, dstOffset: VkDeviceSize(byteOffset + done), size: VkDeviceSize(piece))
                    vkCmdCopyBuffer(commandBuffer, staging.handle, target.handle, 1, &region)
                }
                done += piece
            }
        }
    }

    public func read(_ buffer: BufferID, byteOffset: Int, into bytes: UnsafeMutableRawBufferPointer) throws(GPUError) {
        guard let destination = bytes.baseAddress, bytes.count > 0 else {
            _ = try lookup(buffer, byteOffset: byteOffset, byteCount: 0)
            return
        }
        let source = try lookup(buffer, byteOffset: byteOffset, byteCount: bytes.count)
        if let mapped = hostPointer(source) {
            memcpy(destination, mapped + byteOffset, bytes.count)
            return
        }
        try state.withLock { (state: inout State) throws(GPUError) in
            let slot = try transferSlot(&state)
            var done = 0
            while done < bytes.count {
                let piece = min(bytes.count - done, options.standaloneStagingLimit)
                let staging = try slot.staging.reserve(piece)
                try transfer(&state) { commandBuffer in
                    var region = VkBufferCopy(srcOffset: VkDeviceSize(byteOffset + done), dstOffset: 0, size: VkDeviceSize(piece))
                    vkCmdCopyBuffer(commandBuffer, source.handle, staging.handle, 1, &region)
                }
                memcpy(destination + done, staging.mapped, piece)
                done += piece
            }
        }
    }

    // MARK: Shared host memory

    public func shareHostMemory(_ bytes: UnsafeMutableRawBufferPointer) -> HostMemoryShare? {
        guard options.hostImport == .automatic, vk.hostImportAlignment != nil, let base = bytes.baseAddress else { return nil }
        let imported: VulkanImportedHostMemory? = state.withLock { state in
            // Several vGPUs of one VM share its RAM: one import, counted.
            if let index = state.imports.firstIndex(where: { $0.memory.base == base && $0.memory.byteCount == bytes.count }) {
                state.imports[index].shares += 1
                return state.imports[index].memory
            }
            do throws(VulkanImportedHostMemory.Refusal) {
                let memory = try VulkanImportedHostMemory(device: vk, bytes: bytes, serial: state.nextImportSerial)
                state.nextImportSerial += 1
                state.imports.append((memory, 1))
                return memory
            } catch {
                logger.info("GPUHost: \(bytes.count >> 20) MiB of host memory not imported, its transfers go through staging: \(error)")
                return nil
            }
        }
        guard let imported else { return nil }
        return HostMemoryShare(bytes: bytes) { [weak self] in self?.unshare(imported) }
    }

    /// Drops a share; the last one forgets the import. Returns once no batch copies through
    /// it any more, so the owner may unmap the memory: recordings that name it are dropped,
    /// and batches still in flight with it (the owner's contract says there are none) are
    /// waited for.
    private func unshare(_ imported: VulkanImportedHostMemory) {
        let fences: [VkFence?] = state.withLock { state in
            guard let index = state.imports.firstIndex(where: { $0.memory === imported }) else { return [] }
            state.imports[index].shares -= 1
            guard state.imports[index].shares == 0 else { return [] }
            state.imports.remove(at: index)
            for slot in state.freeSlots where slot.recording?.imports.contains(where: { $0 === imported }) == true {
                slot.recording = nil
            }
            return state.inFlight.values.filter { $0.imports.contains { $0 === imported } }.map(\.slot.fence)
        }
        if !fences.isEmpty {
            logger.warning("GPUHost: shared host memory released with \(fences.count) batch(es) still copying through it; waiting for them")
            _ = vkWaitForFences(vk.handle, UInt32(fences.count), fences, VkBool32(VK_TRUE), .max)
        }
    }

    /// Where the host reads and writes a buffer directly, or nil when it must go through
    /// staging: memory that is not host-mapped, or device-local memory under
    /// `staging: .always`.
    private func hostPointer(_ buffer: VulkanBuffer) -> UnsafeMutableRawPointer? {
        if options.staging == .always, buffer.placement == .deviceLocal { return nil }
        return buffer.mapped
    }

    /// Staging allocations made so far by the standalone transfer path and by every slot
    /// not in flight; for tests of "steady state allocates nothing".
    var stagingAllocationCount: Int {
        state.withLock { state in
            (state.transferSlot?.staging.allocationCount ?? 0) + state.freeSlots.reduce(0) { $0 + $1.staging.allocationCount }
        }
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

    /// The slot standalone copies and fills use, created on first use. Call locked.
    private func transferSlot(_ state: inout State) throws(GPUError) -> VulkanSubmissionSlot {
        if let existing = state.transferSlot { return existing }
        let slot = try VulkanSubmissionSlot(device: vk, timestamps: false)
        state.transferSlot = slot
        return slot
    }

    /// Records `body` between the batch entry/exit barriers on the transfer slot, submits it
    /// and waits. Called with the lock held (it uses the queue).
    private func transfer(_ state: inout State, _ body: (VkCommandBuffer) -> Void) throws(GPUError) {
        let slot = try transferSlot(&state)
        try slot.begin(dispatches: 0)
        VulkanCommands.enterBatch(slot.commandBuffer)
        body(slot.commandBuffer)
        VulkanCommands.leaveBatch(slot.commandBuffer)
        try vkCheck(vkEndCommandBuffer(slot.commandBuffer), "vkEndCommandBuffer")
        try queueSubmit(slot)
        try vkCheck(vkWaitForFences(vk.handle, 1, [slot.fence], VkBool32(VK_TRUE), .max), "vkWaitForFences")
    }

    private func queueSubmit(_ slot: VulkanSubmissionSlot, lane: Int = 0) throws(GPUError) {
        var commandBuffer: VkCommandBuffer? = slot.commandBuffer
        let result = withUnsafePointer(to: &commandBuffer) { pointer in
            var info = VkSubmitInfo()
            info.sType = VK_STRUCTURE_TYPE_SUBMIT_INFO
            info.commandBufferCount = 1
            info.pCommandBuffers = pointer
            return vkQueueSubmit(vk.queues[lane % vk.queues.count], 1, &info, slot.fence)
        }
        try vkCheck(result, "vkQueueSubmit")
    }

    // MARK: Batches

    /// One lane per queue of the compute family (up to `VulkanDevice.maxLanes`).
    public var lanes: Int { vk.queues.count }

    public func submit(_ validated: ValidatedBatch) throws(GPUError) -> SubmissionID {
        let started = monotonicNanoseconds()
        return try state.withLock { (state: inout State) throws(GPUError) -> SubmissionID in
            let buffers = state.buffers
            // A recording of these kernels made since the last buffer was destroyed passed
            // `fits` then, and nothing it names has changed: only the transfers need checking
            // (a replayed epoch otherwise re-checked every operand, most of its submit time).
            let generation = state.bufferGeneration
            let recordedHere = state.freeSlots.contains {
                $0.recording.map { $0.key.kernels === validated.kernelList && $0.key.bufferGeneration == generation } ?? false
            }
            if recordedHere {
                try validated.transfersFit(capacity: { buffers[$0]?.byteCount })
            } else {
                try validated.fits(capacity: { buffers[$0]?.byteCount })
            }
            let batch = validated.batch
            let plan = plan(batch, buffers: buffers, imports: state.imports.map(\.memory))
            let key = VulkanRecording.Key(kernels: validated.kernelList, sgemmVariant: SGEMMVariant.forced,
                                          bufferGeneration: state.bufferGeneration,
                                          stagedUploads: plan.stagedUploads.map(\.shape),
                                          stagedDownloads: plan.stagedDownloads.map(\.shape),
                                          importedUploads: plan.importedUploads.map(\.shape),
                                          importedDownloads: plan.importedDownloads.map(\.shape))
            let slot = try takeSlot(for: key, &state)
            let recording: VulkanRecording
            var replayed = false
            var uploadNanoseconds: UInt64 = 0
            var downloads: [HostCopy] = []
            do throws(GPUError) {
                var staging: (handle: VkBuffer, mapped: UnsafeMutableRawPointer)?
                if plan.stagingBytes > 0 {
                    staging = try slot.staging.reserve(plan.stagingBytes)
                }
                if let kept = slot.recording, kept.key == key, kept.staging == staging?.handle {
                    try slot.rearm()
                    recording = kept
                    replayed = true
                } else {
                    recording = try record(validated, key: key, into: slot, state: &state, plan: plan,
                                           staging: staging?.handle)
                }
                // The host writes go in last, once nothing but the queue submission can fail,
                // so a refused batch leaves its buffers untouched. Host writes made before
                // vkQueueSubmit are visible to the batch (the submission's implicit host
                // memory dependency), and coherent memory needs no flush.
                let copying = monotonicNanoseconds()
                for copy in plan.directUploads {
                    memcpy(copy.destination, copy.source, copy.count)
                }
                if let staging {
                    for upload in plan.stagedUploads {
                        if let source = upload.host.baseAddress {
                            memcpy(staging.mapped + upload.stagingOffset, source, upload.host.count)
                        }
                    }
                }
                uploadNanoseconds = monotonicNanoseconds() - copying
                downloads = plan.downloadCopies(staging: staging?.mapped)
                try queueSubmit(slot, lane: batch.lane)
            } catch {
                // Nothing was queued: the slot is reusable (begin() resets it).
                recycle(slot, into: &state)
                throw error
            }
            let id = SubmissionID(rawValue: state.nextSubmission)
            state.nextSubmission += 1
            slot.lastUsed = id.rawValue
            let elapsed = monotonicNanoseconds() - started
            // The recording's imports are the plan's: its key names every import it copies through.
            state.inFlight[id] = InFlight(slot: slot, buffers: recording.buffers + plan.buffers, imports: recording.imports,
                                          kernelCount: batch.kernels.count, dispatchCount: recording.dispatchCount,
                                          barrierCount: recording.barrierCount, downloads: downloads,
                                          uploadNanoseconds: uploadNanoseconds,
                                          submitNanoseconds: elapsed - min(elapsed, uploadNanoseconds), replayed: replayed,
                                          zeroCopyBytes: plan.zeroCopyBytes)
            return id
        }
    }

    /// Most slots kept for their recordings' sake. A training loop cycles through a few
    /// distinct batches (the step, an evaluation, a parameter sync); with a slot each, every
    /// one of them replays. More slots than this are made only while all are in flight.
    static let replaySlots = 8

    /// Call locked. A free slot holding the recording `key` names. Else, for kernels submitted
    /// before (they repeat, so their recording is worth a slot of its own) a new slot while
    /// there are fewer than `replaySlots`. Else the free slot with nothing recorded or whose
    /// recording was used longest ago, so batches that never repeat (a direct client
    /// validates each one anew) keep reusing one slot and its staging memory. A new slot when
    /// every slot is in flight.
    private func takeSlot(for key: VulkanRecording.Key, _ state: inout State) throws(GPUError) -> VulkanSubmissionSlot {
        let free = state.freeSlots
        if let index = free.firstIndex(where: { $0.recording?.key == key }) { return state.freeSlots.remove(at: index) }
        let repeats = state.recentKernelLists.contains { $0 === key.kernels }
        if !repeats {
            state.recentKernelLists.append(key.kernels)
            if state.recentKernelLists.count > Self.replaySlots * 4 { state.recentKernelLists.removeFirst() }
        }
        func age(_ slot: VulkanSubmissionSlot) -> UInt64 { slot.recording == nil ? 0 : slot.lastUsed }
        if !(repeats && state.slotCount < Self.replaySlots), let index = free.indices.min(by: { age(free[$0]) < age(free[$1]) }) {
            return state.freeSlots.remove(at: index)
        }
        let slot = try VulkanSubmissionSlot(device: vk, timestamps: device.timestampPeriod != nil)
        state.slotCount += 1
        return slot
    }

    /// Decides how each of a validated batch's transfers is served: by memcpy where the host
    /// maps the buffer, else through staging, packed back to back (a copy region needs no
    /// alignment).
    private func plan(_ batch: CommandBatch, buffers: BufferTable<VulkanBuffer>,
                      imports: [VulkanImportedHostMemory]) -> TransferPlan {
        var plan = TransferPlan()
        guard batch.hasHostTransfers else { return plan }
        func imported(_ transfer: HostTransfer, _ target: VulkanBuffer, host: UnsafeMutableRawPointer) -> ImportedCopy? {
            for memory in imports {
                if let offset = memory.offset(of: host, count: transfer.byteCount) {
                    return ImportedCopy(id: transfer.buffer, buffer: target, bufferOffset: transfer.byteOffset, source: memory,
                                        importOffset: offset, count: transfer.byteCount)
                }
            }
            return nil
        }
        // Downloads land in host memory in the batch's order. Device copies into overlapping
        // host bytes would race, so such a batch takes its downloads through staging.
        let downloadsMayImport = !imports.isEmpty && !Self.overlap(batch.downloads.map(\.host))
        var seen = Set<BufferID>()
        func resolve(_ transfer: HostTransfer) -> (buffer: VulkanBuffer, host: UnsafeMutableRawPointer)? {
            // Validated, so the buffer exists; an empty transfer has nothing to copy.
            guard transfer.byteCount > 0, let buffer = buffers[transfer.buffer],
                  let host = transfer.host.baseAddress else { return nil }
            if seen.insert(transfer.buffer).inserted { plan.buffers.append(buffer) }
            return (buffer, host)
        }
        func stage(_ transfer: HostTransfer, _ buffer: VulkanBuffer) -> StagedCopy {
            let copy = StagedCopy(id: transfer.buffer, buffer: buffer, bufferOffset: transfer.byteOffset, stagingOffset: plan.stagingBytes,
                                  host: transfer.host)
            // Each transfer fits its buffer, so the sum stays far from Int.max in practice;
            // saturate anyway, and the reservation fails.
            let (sum, overflow) = plan.stagingBytes.addingReportingOverflow(transfer.byteCount)
            plan.stagingBytes = overflow ? .max : sum
            return copy
        }
        for upload in batch.uploads {
            guard let target = resolve(upload) else { continue }
            if let mapped = hostPointer(target.buffer) {
                plan.directUploads.append(HostCopy(destination: mapped + upload.byteOffset,
                                                   source: UnsafeRawPointer(target.host), count: upload.byteCount))
            } else if let copy = imported(upload, target.buffer, host: target.host) {
                plan.importedUploads.append(copy)
            } else {
                plan.stagedUploads.append(stage(upload, target.buffer))
            }
        }
        for download in batch.downloads {
            guard let source = resolve(download) else { continue }
            if let mapped = hostPointer(source.buffer) {
                plan.downloads.append((source.host, .mapped(UnsafeRawPointer(mapped + download.byteOffset)),
                                       download.byteCount))
            } else if downloadsMayImport, let copy = imported(download, source.buffer, host: source.host) {
                plan.importedDownloads.append(copy)
            } else {
                let copy = stage(download, source.buffer)
                plan.stagedDownloads.append(copy)
                plan.downloads.append((source.host, .staging(offset: copy.stagingOffset), download.byteCount))
            }
        }
        return plan
    }

    /// Whether any two of the ranges share a byte.
    private static func overlap(_ ranges: [UnsafeHostBytes]) -> Bool {
        let sorted = ranges.compactMap { range in range.baseAddress.map { (start: Int(bitPattern: $0), count: range.count) } }
            .filter { $0.count > 0 }.sorted { $0.start < $1.start }
        return zip(sorted, sorted.dropFirst()).contains { $1.start < $0.start + $0.count }
    }

    /// Returns a slot whose batch retired (or never went to the queue) to the free list,
    /// dropping staging memory too big to keep for the next batch.
    private func recycle(_ slot: VulkanSubmissionSlot, into state: inout State) {
        if slot.staging.capacity > options.slotStagingRetainLimit {
            slot.staging.release()
            // Its copy regions named the freed staging buffer.
            slot.recording = nil
        }
        // Its copy regions name an import whose memory its owner may be unmapping.
        if let recording = slot.recording,
           !recording.imports.allSatisfy({ used in state.imports.contains { $0.memory === used } }) {
            slot.recording = nil
        }
        state.freeSlots.append(slot)
    }

    /// Records `copies` as one vkCmdCopyBuffer per run of consecutive copies between the same
    /// two buffers, joining copies that continue each other on both sides (a range the guest
    /// scattered over pages becomes one region again).
    private func recordCopies(_ copies: [DeviceCopy], toBuffer: Bool, _ commandBuffer: VkCommandBuffer) {
        var index = 0
        while index < copies.count {
            let (buffer, other) = (copies[index].buffer, copies[index].other)
            var regions: [VkBufferCopy] = []
            while index < copies.count, copies[index].buffer === buffer, copies[index].other == other {
                let copy = copies[index]
                index += 1
                let (bufferOffset, otherOffset, size) = (VkDeviceSize(copy.bufferOffset), VkDeviceSize(copy.otherOffset),
                                                         VkDeviceSize(copy.count))
                if var last = regions.last {
                    let lastBuffer = toBuffer ? last.dstOffset : last.srcOffset
                    let lastOther = toBuffer ? last.srcOffset : last.dstOffset
                    if lastBuffer + last.size == bufferOffset, lastOther + last.size == otherOffset {
                        last.size += size
                        regions[regions.count - 1] = last
                        continue
                    }
                }
                regions.append(toBuffer
                    ? VkBufferCopy(srcOffset: otherOffset, dstOffset: bufferOffset, size: size)
                    : VkBufferCopy(srcOffset: bufferOffset, dstOffset: otherOffset, size: size))
            }
            regions.withUnsafeBufferPointer { pointer in
                vkCmdCopyBuffer(commandBuffer, toBuffer ? other : buffer.handle, toBuffer ? buffer.handle : other,
                                UInt32(pointer.count), pointer.baseAddress)
            }
        }
    }

    /// Lowers the batch to dispatches and records them into `slot`, replayable; returns what
    /// the slot now holds. The plan's device copies (staged ones against `staging`) bracket
    /// the dispatches. Call locked.
    private func record(_ validated: ValidatedBatch, key: VulkanRecording.Key, into slot: VulkanSubmissionSlot,
                        state: inout State, plan: TransferPlan, staging: VkBuffer?) throws(GPUError) -> VulkanRecording {
        var dispatches: [ShaderDispatch] = []
        for (kernel, operands) in zip(validated.kernels, validated.operands) {
            dispatches += kernel.shaderDispatches(operands: operands, maxGroupsX: device.maxComputeWorkGroupCount.first ?? 65535)
        }
        for dispatch in dispatches where state.pipelines[dispatch.shader] == nil {
            state.pipelines[dispatch.shader] = try VulkanPipeline(device: vk, shader: dispatch.shader)
        }
        let barriers = try record(dispatches, into: slot, buffers: state.buffers.byID, pipelines: state.pipelines,
                                  copies: plan.deviceCopies(staging: staging), bufferGeneration: state.bufferGeneration)
        var used: [BufferID: VulkanBuffer] = [:]
        for dispatch in dispatches {
            for id in dispatch.bindings { used[id] = state.buffers[id] }
        }
        let recording = VulkanRecording(key: key, staging: staging, dispatchCount: dispatches.count,
                                        barrierCount: barriers, buffers: Array(used.values), imports: plan.imports)
        slot.recording = recording
        return recording
    }

    /// Records the dispatches, bracketed by the batch's device copies; returns the number of
    /// barriers placed between dispatches.
    private func record(_ dispatches: [ShaderDispatch], into slot: VulkanSubmissionSlot,
                        buffers: [BufferID: VulkanBuffer], pipelines: [ShaderKernel: VulkanPipeline],
                        copies: (uploads: [DeviceCopy], downloads: [DeviceCopy]), bufferGeneration: UInt64) throws(GPUError) -> Int {
        try slot.begin(dispatches: dispatches.count, bufferGeneration: bufferGeneration, replayable: true)
        let commandBuffer = slot.commandBuffer
        if let queryPool = slot.queryPool {
            vkCmdResetQueryPool(commandBuffer, queryPool, 0, 2)
        }
        VulkanCommands.enterBatch(commandBuffer)
        // BOTTOM_OF_PIPE: written once everything before it on the queue has finished, i.e.
        // when this batch can start; the closing stamp when this batch has finished. Device
        // copies lie between the stamps: they are the batch's device work too.
        if let queryPool = slot.queryPool {
            vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queryPool, 0)
        }
        if !copies.uploads.isEmpty {
            recordCopies(copies.uploads, toBuffer: true, commandBuffer)
            VulkanCommands.transferToCompute(commandBuffer)
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
            var set: VkDescriptorSet? = try slot.descriptorSet(layout: pipeline.setLayout, bindings: dispatch.bindings) {
                (id: BufferID) throws(GPUError) -> VkBuffer in
                guard let buffer = buffers[id] else { throw .unknownBuffer(id) }
                return buffer.handle
            }
            vkCmdBindDescriptorSets(commandBuffer, VK_PIPELINE_BIND_POINT_COMPUTE, pipeline.layout, 0, 1, &set, 0, nil)
            dispatch.pushConstants.withUnsafeBytes { raw in
                vkCmdPushConstants(commandBuffer, pipeline.layout, VK_SHADER_STAGE_COMPUTE_BIT.rawValue, 0,
                                   UInt32(raw.count), raw.baseAddress)
            }
            vkCmdDispatch(commandBuffer, dispatch.groups.x, dispatch.groups.y, 1)
        }
        if !copies.downloads.isEmpty {
            VulkanCommands.computeToTransfer(commandBuffer)
            recordCopies(copies.downloads, toBuffer: false, commandBuffer)
        }
        if let queryPool = slot.queryPool {
            vkCmdWriteTimestamp(commandBuffer, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, queryPool, 1)
        }
        // Also makes the downloads' device copies visible to the host (reads of staging in
        // `wait`, the guest's reads of its RAM).
        VulkanCommands.leaveBatch(commandBuffer)
        try vkCheck(vkEndCommandBuffer(commandBuffer), "vkEndCommandBuffer")
        return barriers
    }

    /// Spins briefly (a small batch often finishes within microseconds, and a sleeping fence
    /// wait costs an interrupt and a wake-up, tens of µs on a virtualised host), then sleeps
    /// in one vkWaitForFences over all of them.
    public func waitForAny(_ submissions: [SubmissionID], timeoutNanoseconds: UInt64) throws(GPUError) -> [SubmissionID] {
        let flights = state.withLock { state in submissions.compactMap { id in state.inFlight[id].map { (id, $0.slot.fence) } } }
        guard flights.count == submissions.count else {
            throw .unknownSubmission(submissions.first { id in !flights.contains { $0.0 == id } } ?? SubmissionID(rawValue: 0))
        }
        func finished() throws(GPUError) -> [SubmissionID] {
            var done: [SubmissionID] = []
            for (id, fence) in flights {
                let status = vkGetFenceStatus(vk.handle, fence)
                if status == VK_NOT_READY { continue }
                try vkCheck(status, "vkGetFenceStatus")
                done.append(id)
            }
            return done
        }
        let spinUntil = monotonicNanoseconds() + Self.spinNanoseconds
        repeat {
            let done = try finished()
            if !done.isEmpty { return done }
        } while monotonicNanoseconds() < spinUntil
        let fences: [VkFence?] = flights.map { $0.1 }
        let waited = vkWaitForFences(vk.handle, UInt32(fences.count), fences, VkBool32(VK_FALSE), timeoutNanoseconds)
        if waited == VK_TIMEOUT { return [] }
        try vkCheck(waited, "vkWaitForFences")
        return try finished()
    }

    /// How long `waitForAny` polls before it sleeps.
    static let spinNanoseconds: UInt64 = 20_000

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
        // The slot, and with it the staging memory the downloads come from, is reused only
        // after they are out.
        defer { state.withLock { recycle(flight.slot, into: &$0) } }
        let started = monotonicNanoseconds()
        for copy in flight.downloads {
            memcpy(copy.destination, copy.source, copy.count)
        }
        let downloadNanoseconds = monotonicNanoseconds() - started

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
            timing: nanoseconds == nil ? .unavailable : .deviceTimestamps,
            uploadNanoseconds: flight.uploadNanoseconds, downloadNanoseconds: downloadNanoseconds,
            submitNanoseconds: flight.submitNanoseconds, replayedRecording: flight.replayed,
            zeroCopyBytes: flight.zeroCopyBytes)
    }
}
