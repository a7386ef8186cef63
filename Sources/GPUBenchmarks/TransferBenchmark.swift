#if canImport(Glibc)
import Glibc
#endif
import GPUHost
import Platform

/// What moving a guest blob costs on the way a discrete GPU takes it (buffers the host cannot
/// map): through staging (memcpy from guest RAM into staging at submit, device copy, and back
/// at wait) against zero-copy (guest RAM imported as device memory, device copies only). The
/// blob is in shared pages, as guest RAM is, and travels in 4 KiB pieces, as a guest's
/// scattered pages do; each batch uploads it, doubles it on the device and downloads it into
/// another place, whose bytes are checked every round.
public enum TransferBenchmark {
    public struct Measurement: Sendable {
        public var bytes: Int
        public var rounds: Int
        /// Median host time per batch in the backend's copies (`uploadNanoseconds +
        /// downloadNanoseconds`).
        public var stagedHostCopyNanoseconds: Double
        public var zeroCopyHostCopyNanoseconds: Double
        /// Median wall time per batch, submit to completion.
        public var stagedWallNanoseconds: Double
        public var zeroCopyWallNanoseconds: Double
        /// Median device time per batch (the device copies are in it).
        public var stagedDeviceNanoseconds: Double?
        public var zeroCopyDeviceNanoseconds: Double?
    }

    /// `rounds` batches each way, alternating, after one warm-up each. Nil when the device
    /// cannot import host memory (no VK_EXT_external_memory_host).
    package static func measure(selector: DeviceSelector = .automatic, bytes: Int, rounds: Int) throws(GPUBenchmarkError)
        -> Measurement? {
        do {
            return try measureThrowing(selector: selector, bytes: bytes, rounds: rounds)
        } catch let error as GPUBenchmarkError {
            throw error
        } catch {
            throw GPUBenchmarkError("transfer: \(error)")
        }
    }

    private final class SharedPages {
        let bytes: UnsafeMutableRawBufferPointer

        init(count: Int) throws {
            guard let base = mmap(nil, count, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0), base != MAP_FAILED else {
                throw GPUBenchmarkError("transfer: cannot map \(count) bytes (errno \(errno))")
            }
            bytes = UnsafeMutableRawBufferPointer(start: base, count: count)
        }

        deinit { munmap(bytes.baseAddress, bytes.count) }
    }

    private static func measureThrowing(selector: DeviceSelector, bytes: Int, rounds: Int) throws -> Measurement? {
        let page = 4096
        let length = (bytes + page - 1) / page * page
        // The same device twice: one backend may import, the other must stage.
        let zeroCopy = try VulkanBackend(selector: selector, options: VulkanBackendOptions(staging: .always))
        let staged = try VulkanBackend(selector: selector, options: VulkanBackendOptions(staging: .always, hostImport: .off))
        // Blob, then the place its result goes.
        let pages = try SharedPages(count: 2 * length)
        guard let share = zeroCopy.shareHostMemory(pages.bytes) else { return nil }
        defer { withExtendedLifetime(share) {} }

        struct Job {
            let backend: VulkanBackend
            let buffer: BufferID
            let batch: ValidatedBatch
        }
        func job(on backend: VulkanBackend) throws -> Job {
            let buffer = try backend.createBuffer(byteCount: length, placement: .deviceLocal)
            let count = length / 4
            func pieces(from offset: Int) -> [HostTransfer] {
                stride(from: 0, to: length, by: page).map { start in
                    HostTransfer(buffer: buffer, byteOffset: start,
                                 host: UnsafeMutableRawBufferPointer(rebasing: pages.bytes[offset + start ..< offset + start + page]))
                }
            }
            let batch = CommandBatch([.scale(ScaleParams(count: count, alpha: 2, x: BufferRange(buffer, count: count)))],
                                     uploads: pieces(from: 0), downloads: pieces(from: length))
            return Job(backend: backend, buffer: buffer, batch: try ValidatedBatch(batch, capacity: { backend.capacity(of: $0) }))
        }
        let jobs = [try job(on: staged), try job(on: zeroCopy)]
        defer { for job in jobs { try? job.backend.destroyBuffer(job.buffer) } }

        typealias Sample = (hostCopy: Double, wall: Double, device: Double?)
        var round = 0
        func timed(_ job: Job) throws -> Sample {
            round += 1
            let floats = length / 4
            for index in stride(from: 0, to: floats, by: 997) {
                pages.bytes.storeBytes(of: Float(index % 251 + round), toByteOffset: index * 4, as: Float.self)
            }
            let start = monotonicNanoseconds()
            let completion = try job.backend.wait(try job.backend.submit(job.batch), timeoutNanoseconds: .max)
            let wall = Double(monotonicNanoseconds() - start)
            for index in stride(from: 0, to: floats, by: 997) {
                let got = pages.bytes.load(fromByteOffset: length + index * 4, as: Float.self)
                guard got == 2 * Float(index % 251 + round) else {
                    throw GPUBenchmarkError("transfer: wrong result at float \(index): \(got)")
                }
            }
            let expectZeroCopy = job.backend === zeroCopy
            guard (completion.zeroCopyBytes == UInt64(2 * length)) == expectZeroCopy else {
                throw GPUBenchmarkError("transfer: the \(expectZeroCopy ? "zero-copy" : "staged") batch moved \(completion.zeroCopyBytes) bytes in place")
            }
            return (Double(completion.uploadNanoseconds + completion.downloadNanoseconds), wall,
                    completion.executionNanoseconds.map(Double.init))
        }
        for job in jobs { _ = try timed(job) }
        var samples: [[Sample]] = [[], []]
        for _ in 0 ..< rounds {
            for (index, job) in jobs.enumerated() { samples[index].append(try timed(job)) }
        }
        func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
        func deviceMedian(_ values: [Sample]) -> Double? {
            let devices = values.compactMap(\.device)
            return devices.isEmpty ? nil : median(devices)
        }
        return Measurement(bytes: length, rounds: rounds,
                           stagedHostCopyNanoseconds: median(samples[0].map(\.hostCopy)),
                           zeroCopyHostCopyNanoseconds: median(samples[1].map(\.hostCopy)),
                           stagedWallNanoseconds: median(samples[0].map(\.wall)),
                           zeroCopyWallNanoseconds: median(samples[1].map(\.wall)),
                           stagedDeviceNanoseconds: deviceMedian(samples[0]), zeroCopyDeviceNanoseconds: deviceMedian(samples[1]))
    }
}
