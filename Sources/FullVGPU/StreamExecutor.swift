import GPUHost
import GVMCS
import Hypervisor
import Logging
import VGPUCore
import Platform

/// Runs the full-vGPU's GPU work on the GPUHost scheduler: the model's command executor.
///
/// A kernel stream names guest memory by GPU virtual address. The executor decodes it with the
/// para-vGPU's compute-stream decoder, translates every buffer it binds through the G-VMCS's
/// two stages (the translator the unit hands over), gathers the translated pages into one
/// staging buffer on the GPU, runs the batch and scatters what the kernels wrote back. The
/// gather and scatter stand for the DMA a GPU does over its IOMMU; buffers whose ranges overlap
/// share their staging bytes, so in-place kernels and aliases behave as they do in memory.
/// Gather and scatter travel in the batch as its uploads and downloads, so a stream is one
/// submission and one wait however many pages it binds.
///
/// Called on the device thread only (inside `gvmresume`), so it needs no lock of its own.
final class StreamExecutor: GVMCommandExecutor {
    /// `dispatch` kernel ids the device knows.
    enum DispatchKernel: UInt32 {
        /// Copies `length` bytes (a multiple of 4) from the input to the output buffer.
        case copy = 1
    }

    /// Why the last command failed on the host side, for the fault registers and the log.
    enum Failure: Equatable {
        /// The guest's stream or kernel was wrong (invalid command).
        case invalid(String)
        /// The GPU or the scheduler failed the batch (quota, device loss): not the stream's fault.
        case device(String)
    }

    private let scheduler: GPUScheduler
    private let client: ClientID
    /// The vGPU's GPU memory (its profile's): a stream may not bind more, so a hostile one cannot
    /// make the device thread translate terabytes before the allocation would fail.
    private let memoryLimit: UInt64
    private let memory: HostMemory
    private let logger: Logger
    private var staging: (buffer: BufferID, bytes: Int)?
    private(set) var lastFailure: Failure?
    private(set) var statistics = VGPUStatistics()

    /// Segments are placed at this alignment in the staging buffer (storage-buffer offsets).
    static let segmentAlignment = 256

    init(scheduler: GPUScheduler, client: ClientID, memoryLimit: UInt64, memory: HostMemory, logger: Logger) {
        self.scheduler = scheduler
        self.client = client
        self.memoryLimit = memoryLimit
        self.memory = memory
        self.logger = logger
    }

    /// Frees the staging buffer (the client's removal would free it too).
    func releaseStaging() {
        if let staging { try? scheduler.destroyBuffer(staging.buffer, for: client) }
        staging = nil
    }

    // MARK: GVMCommandExecutor

    func execute(_ dispatch: GVMDispatch) -> GVMExecutionOutcome {
        guard DispatchKernel(rawValue: dispatch.kernel) == .copy else { return .unknownKernel }
        lastFailure = nil
        let length = dispatch.input.reduce(0) { $0 + $1.length }
        guard length % 4 == 0 else {
            lastFailure = .invalid("copy of \(length) bytes is not whole 4-byte words")
            return .invalidWork
        }
        let count = Int(length / 4)
        let segments = [Segment(ranges: dispatch.input, written: false),
                        Segment(ranges: dispatch.output, written: true)]
        let offsets = Self.layout(segments)
        return run(segments: segments, offsets: offsets, commands: 1, streamBytes: 0) { staging in
            CommandBatch([.crop(CropParams(
                batch: 1, channels: 1, height: 1, width: count, top: 0, left: 0, outHeight: 1, outWidth: count,
                input: BufferRange(staging, offset: offsets[0] / 4, count: count),
                output: BufferRange(staging, offset: offsets[1] / 4, count: count)))])
        }
    }

    func execute(_ stream: GVMStream, translator: GVMBufferTranslator) -> GVMExecutionOutcome {
        lastFailure = nil
        let started = monotonicNanoseconds()
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(stream.length))
        for range in stream.ranges {
            guard let piece = memory.guestBytes(range) else { return .fault(.unbackedAddress(range.address)) }
            bytes.append(contentsOf: piece)
        }

        // Pass 1: which guest ranges the stream binds, and how each kernel uses them.
        var references: [Reference] = []
        let placeholders: CommandBatch
        do {
            placeholders = try ComputeStream.decode(bytes) { reference, element, command, operand throws(ComputeStreamError) in
                try Self.check(reference, element, command, operand)
                references.append(Reference(address: reference.offset, length: UInt64(reference.length),
                                            element: element))
                return BufferRange(BufferID(rawValue: UInt64(references.count - 1)), count: Int(reference.length) / element.byteSize)
            }
            for kernel in placeholders.kernels {
                for operand in try kernel.operands() where operand.access != .read {
                    references[Int(operand.range.buffer.rawValue)].written = true
                }
            }
        } catch {
            lastFailure = .invalid("\(error)")
            logger.info("full-vGPU stream refused: \(error)")
            return .invalidWork
        }

        // Overlapping ranges become one segment, translated page by page.
        let order = references.indices.sorted { references[$0].start < references[$1].start }
        var segments: [Segment] = []
        var bounds: [(start: UInt64, end: UInt64)] = []
        var segmentOf = [Int](repeating: 0, count: references.count)
        for index in order {
            let reference = references[index]
            if let last = bounds.last, reference.start <= last.end {
                bounds[bounds.count - 1].end = max(last.end, reference.end)
                segments[segments.count - 1].written = segments[segments.count - 1].written || reference.written
            } else {
                bounds.append((reference.start, reference.end))
                segments.append(Segment(ranges: [], written: reference.written))
            }
            segmentOf[index] = segments.count - 1
        }
        let bound = bounds.reduce(UInt64(0)) { $0 + ($1.end - $1.start) }
        guard bound <= memoryLimit else {
            lastFailure = .invalid("the stream binds \(bound) bytes, more than the vGPU's \(memoryLimit)")
            return .invalidWork
        }
        for index in segments.indices {
            let access: GEPTPermissions = segments[index].written ? [.read, .write] : .read
            do {
                segments[index].ranges = try translator.ranges(bounds[index].start, length: bounds[index].end - bounds[index].start,
                                                               access: access)
            } catch {
                return .fault(error)
            }
        }
        statistics.decodeNanoseconds += monotonicNanoseconds() - started

        // Pass 2: the same stream bound to the staging buffer.
        let offsets = Self.layout(segments)
        return run(segments: segments, offsets: offsets, commands: placeholders.kernels.count,
                   streamBytes: bytes.count) { staging throws(ComputeStreamError) in
            var next = 0
            return try ComputeStream.decode(bytes) { reference, element, _, _ throws(ComputeStreamError) in
                defer { next += 1 }
                let segment = segmentOf[next]
                let byteOffset = offsets[segment] + Int(references[next].address - bounds[segment].start)
                return BufferRange(staging, offset: byteOffset / element.byteSize,
                                   count: Int(reference.length) / element.byteSize)
            }
        }
    }

    // MARK: Private

    private struct Reference {
        var address: UInt64
        var length: UInt64
        var element: ElementType
        var written = false
        /// Segments start and end on 16-byte boundaries, so every element offset in them is aligned.
        var start: UInt64 { address & ~15 }
        var end: UInt64 { (address + length + 15) & ~15 }
    }

    private struct Segment {
        var ranges: [GVMHostRange]
        var written: Bool
        var length: Int { ranges.reduce(0) { $0 + Int($1.length) } }
    }

    private static func check(_ reference: ComputeReference, _ element: ElementType, _ command: Int,
                              _ operand: String) throws(ComputeStreamError) {
        guard reference.resourceID == 0 else {
            throw .badReference(command: command, operand: operand,
                                reason: "names resource \(reference.resourceID): full-vGPU references are GPU addresses (resource 0)")
        }
        let size = UInt64(element.byteSize)
        guard reference.length > 0, UInt64(reference.length) % size == 0, reference.offset % size == 0 else {
            throw .badReference(command: command, operand: operand,
                                reason: "at 0x\(String(reference.offset, radix: 16)) of \(reference.length) bytes is not whole aligned \(size)-byte elements")
        }
        guard reference.offset >> 48 == 0 else {
            throw .badReference(command: command, operand: operand, reason: "is beyond the 48-bit GPU address space")
        }
    }

    private static func layout(_ segments: [Segment]) -> [Int] {
        var offsets: [Int] = []
        var cursor = 0
        for segment in segments {
            offsets.append(cursor)
            cursor += (segment.length + segmentAlignment - 1) / segmentAlignment * segmentAlignment
        }
        return offsets
    }

    /// Gathers the segments into staging, runs the batch `build` binds to it, scatters the
    /// written segments back.
    private func run(segments: [Segment], offsets: [Int], commands: Int, streamBytes: Int,
                     build: (BufferID) throws(ComputeStreamError) -> CommandBatch) -> GVMExecutionOutcome {
        let started = monotonicNanoseconds()
        let total = (offsets.last ?? 0) + (segments.last?.length ?? 0)
        let buffer: BufferID
        do { buffer = try stagingBuffer(bytes: max(total, 4)) } catch {
            lastFailure = .device("\(error)")
            logger.warning("full-vGPU staging buffer: \(error)")
            return .invalidWork
        }
        var batch: CommandBatch
        do { batch = try build(buffer) } catch {
            lastFailure = .invalid("\(error)")
            return .invalidWork
        }
        // Every segment goes up (a kernel may write only part of one, and the rest must go
        // back unchanged); the written ones come back. The guest pages are the transfers' host
        // memory: guest RAM stays mapped, and the device thread waits for the batch here.
        for (segment, offset) in zip(segments, offsets) {
            guard let pieces = guestPieces(segment.ranges, offset: offset, staging: buffer) else {
                return .fault(.unbackedAddress(segment.ranges.first?.address ?? 0))
            }
            batch.uploads += pieces
            statistics.uploadBytes += UInt64(segment.length)
            if segment.written {
                batch.downloads += pieces
                statistics.downloadBytes += UInt64(segment.length)
            }
        }
        let outcome: Result<ScheduledCompletion, SchedulerError>
        do { outcome = try scheduler.submit(batch, for: client).wait() } catch { outcome = .failure(error) }
        switch outcome {
        case let .success(completion):
            statistics.gpuNanoseconds += completion.chargedNanoseconds
            statistics.queueingNanoseconds += completion.queueingNanoseconds
            // The backend's host copies: into staging or mapped memory, and back out.
            statistics.uploadNanoseconds += completion.batch.uploadNanoseconds
            statistics.downloadNanoseconds += completion.batch.downloadNanoseconds
            statistics.submitNanoseconds += completion.batch.submitNanoseconds
            if completion.batch.replayedRecording { statistics.replayedRecordings += 1 }
            statistics.zeroCopyBytes += completion.batch.zeroCopyBytes
        case let .failure(error):
            statistics.submissions += 1
            statistics.endToEndNanoseconds += monotonicNanoseconds() - started
            if case .backend(.invalidKernel) = error {
                lastFailure = .invalid("\(error)")
            } else {
                lastFailure = .device("\(error)")
            }
            logger.info("full-vGPU batch failed: \(error)")
            return .invalidWork
        }
        statistics.submissions += 1
        statistics.commands += UInt64(commands)
        statistics.streamBytes += UInt64(streamBytes)
        statistics.endToEndNanoseconds += monotonicNanoseconds() - started
        return .completed
    }

    /// A segment's guest pages as transfers to or from its place in staging, page run by page
    /// run; nil when one of them is not guest RAM.
    private func guestPieces(_ ranges: [GVMHostRange], offset: Int, staging: BufferID) -> [HostTransfer]? {
        var pieces: [HostTransfer] = []
        pieces.reserveCapacity(ranges.count)
        var cursor = offset
        for range in ranges {
            guard let bytes = memory.guestBytes(range) else { return nil }
            pieces.append(HostTransfer(buffer: staging, byteOffset: cursor, host: bytes))
            cursor += bytes.count
        }
        return pieces
    }

    /// The staging buffer, grown (to a power of two ≥ 1 MiB) when a batch needs more.
    private func stagingBuffer(bytes: Int) throws(SchedulerError) -> BufferID {
        if let staging, staging.bytes >= bytes { return staging.buffer }
        releaseStaging()
        var size = 1 << 20
        while size < bytes { size <<= 1 }
        let buffer = try scheduler.createBuffer(for: client, byteCount: size)
        staging = (buffer, size)
        return buffer
    }
}
