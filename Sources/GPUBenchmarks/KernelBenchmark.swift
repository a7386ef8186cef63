import Foundation
import GPUHost
import Platform

/// Each kernel case through our Vulkan backend against the same SPIR-V and grid dispatched by
/// bench/vkdirect, a minimal direct-Vulkan C program: what GPUHost costs per batch on top of
/// the driver. The two sides run in alternating rounds (vkdirect, ours, vkdirect, ours) as
/// separate processes, each round printing "NAME WALL_NS DEVICE_NS" lines.
public enum KernelBenchmark {
    /// The cases as raw dispatches (shader, groups, bindings, push constants) for vkdirect, as
    /// this device's limits shape them.
    public static func plan(on backend: VulkanBackend, cases: [KernelBenchmarkCase] = KernelBenchmarkCase.standard)
        throws(GPUBenchmarkError) -> String
    {
        let maxX = backend.device.maxComputeWorkGroupCount.first ?? 65535
        var text = ""
        for benchCase in cases {
            let ids = benchCase.bufferBytes.indices.map { BufferID(rawValue: UInt64($0 + 1)) }
            let sizes = Dictionary(uniqueKeysWithValues: zip(ids, benchCase.bufferBytes))
            let dispatches: [DispatchDescription]
            do throws(KernelValidationError) {
                dispatches = try benchCase.kernel(ids).dispatchDescriptions(buffers: sizes, order: ids, maxGroupsX: maxX)
            } catch {
                throw GPUBenchmarkError("\(benchCase.name): \(error)")
            }
            text += "case \(benchCase.name) \(benchCase.iterations)\n"
            for bytes in benchCase.bufferBytes { text += "buffer \(bytes)\n" }
            for d in dispatches {
                text += "dispatch \(d.shader) \(d.groupsX) \(d.groupsY) \(d.bindings.count) "
                    + d.bindings.map(String.init).joined(separator: " ")
                    + " \(d.pushConstants.count) " + d.pushConstants.map(String.init).joined(separator: " ") + "\n"
            }
            text += "end\n"
        }
        return text
    }

    /// One round through our backend: "NAME WALL_NS DEVICE_NS" per case, medians of the timed
    /// runs after two warm-up runs, in vkdirect's format.
    public static func round(on backend: VulkanBackend, cases: [KernelBenchmarkCase] = KernelBenchmarkCase.standard)
        throws(GPUBenchmarkError) -> String
    {
        var text = ""
        for benchCase in cases {
            do throws(GPUError) {
                var ids: [BufferID] = []
                defer { for id in ids { try? backend.destroyBuffer(id) } }
                for bytes in benchCase.bufferBytes {
                    let id = try backend.createBuffer(byteCount: bytes, placement: .deviceLocal)
                    ids.append(id)
                    // Same data as vkdirect writes.
                    try backend.write(floats: (0 ..< bytes / 4).map { Float($0 % 97) * 0.01 - 0.4 }, to: id)
                }
                let batch = CommandBatch([benchCase.kernel(ids)])
                var walls: [UInt64] = []
                var devices: [UInt64] = []
                for iteration in -2 ..< benchCase.iterations {
                    let start = monotonicNanoseconds()
                    let completion = try backend.run(batch)
                    let wall = monotonicNanoseconds() - start
                    if iteration >= 0 {
                        walls.append(wall)
                        devices.append(completion.executionNanoseconds ?? wall)
                    }
                }
                text += "\(benchCase.name) \(median(walls)) \(median(devices))\n"
            } catch {
                throw GPUBenchmarkError("\(benchCase.name): \(error)")
            }
        }
        return text
    }

    /// Per case name, the best (least wall time) of the rounds in `text`: the machine's load
    /// drifts between rounds, and the best round is the one least disturbed by it.
    public static func bestRounds(_ text: String) -> [String: RoundTime] {
        var result: [String: RoundTime] = [:]
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count >= 3, let wall = UInt64(fields[1]), let device = UInt64(fields[2]) else { continue }
            let name = String(fields[0])
            if let seen = result[name], seen.wallNanoseconds <= wall { continue }
            result[name] = RoundTime(wallNanoseconds: wall, deviceNanoseconds: device)
        }
        return result
    }

    /// Our rounds against vkdirect's, case by case.
    public static func compare(ours: [String: RoundTime], direct: [String: RoundTime],
                               cases: [KernelBenchmarkCase] = KernelBenchmarkCase.standard) -> [KernelResult] {
        cases.compactMap { benchCase in
            guard let mine = ours[benchCase.name] else { return nil }
            let other = direct[benchCase.name]
            return KernelResult(
                name: benchCase.name, unit: benchCase.unit, ours: benchCase.rate(nanoseconds: mine.wallNanoseconds),
                direct: other.map { benchCase.rate(nanoseconds: $0.wallNanoseconds) },
                oursWallNanoseconds: mine.wallNanoseconds, directWallNanoseconds: other?.wallNanoseconds,
                oursDeviceNanoseconds: mine.deviceNanoseconds, directDeviceNanoseconds: other?.deviceNanoseconds,
                overheadRatio: other.map { Double(mine.wallNanoseconds) / Double(max($0.wallNanoseconds, 1)) })
        }
    }
}

/// One case's time in a round: wall (submit to completion) and the device's own measure.
public struct RoundTime: Sendable, Equatable {
    public var wallNanoseconds: UInt64
    public var deviceNanoseconds: UInt64
}

public struct KernelResult: Codable, Sendable {
    public var name: String
    public var unit: String
    public var ours: Double
    public var direct: Double?
    public var oursWallNanoseconds: UInt64
    public var directWallNanoseconds: UInt64?
    public var oursDeviceNanoseconds: UInt64
    public var directDeviceNanoseconds: UInt64?
    /// ours / direct wall time per batch (submit → completion); goal ≤ 1.05.
    public var overheadRatio: Double?
}

func median(_ values: [UInt64]) -> UInt64 {
    let sorted = values.sorted()
    return sorted.isEmpty ? 0 : sorted[sorted.count / 2]
}
