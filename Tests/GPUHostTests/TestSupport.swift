@testable import GPUHost
import Logging
import Testing

/// Backends shared by all tests. The Vulkan one is nil on hosts without a Vulkan device, in
/// which case every GPU comparison is skipped (`.enabled(if: Backends.hasVulkan)`) and the
/// CPU-reference tests still run.
enum Backends {
    static let vulkan: VulkanBackend? = try? VulkanBackend(selector: .automatic, logger: Logger(label: "gpuhost.tests"))
    static let cpu = CPUBackend()
    static var hasVulkan: Bool { vulkan != nil }

    static var all: [any ComputeBackend] {
        [cpu] + (vulkan.map { [$0] } ?? [])
    }
}

/// Deterministic data (SplitMix64) so every failure reproduces.
struct TestRandom {
    private var state: UInt64

    init(seed: UInt64) {
        state = seed
    }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func float(in range: ClosedRange<Float> = -1 ... 1) -> Float {
        let unit = Float(next() >> 40) / Float(1 << 24)
        return range.lowerBound + unit * (range.upperBound - range.lowerBound)
    }

    mutating func floats(_ count: Int, in range: ClosedRange<Float> = -1 ... 1) -> [Float] {
        (0 ..< count).map { _ in float(in: range) }
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0 ..< count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }
}

/// Buffers for one test on one backend. Every float operand is placed at a non-zero offset
/// inside a larger buffer, between guard values, so tests also prove offsets are honoured
/// and nothing outside a range is written.
final class Workspace {
    static let guardValue: Float = 12345.5
    static let leading = 5
    static let trailing = 3

    let backend: any ComputeBackend
    private var owned: [BufferID] = []
    private var guarded: [BufferRange] = []

    init(_ backend: any ComputeBackend) {
        self.backend = backend
    }

    deinit {
        for id in owned { try? backend.destroyBuffer(id) }
    }

    func floats(_ values: [Float], placement: MemoryPlacement = .deviceLocal) throws -> BufferRange {
        let padded = [Float](repeating: Self.guardValue, count: Self.leading) + values
            + [Float](repeating: Self.guardValue, count: Self.trailing)
        let id = try backend.makeBuffer(floats: padded, placement: placement)
        owned.append(id)
        let range = BufferRange(id, offset: Self.leading, count: values.count)
        guarded.append(range)
        return range
    }

    func zeros(_ count: Int, placement: MemoryPlacement = .deviceLocal) throws -> BufferRange {
        try floats([Float](repeating: 0, count: count), placement: placement)
    }

    func uint32s(_ values: [UInt32]) throws -> BufferRange {
        let id = try backend.makeBuffer(uint32s: [7, 7] + values)
        owned.append(id)
        return BufferRange(id, offset: 2, count: values.count)
    }

    /// Bytes at an odd offset, so the shader's byte-from-word extraction is exercised.
    func bytes(_ values: [UInt8]) throws -> BufferRange {
        let id = try backend.makeBuffer(bytes: [0xAA, 0xBB, 0xCC] + values)
        owned.append(id)
        return BufferRange(id, offset: 3, count: values.count)
    }

    func read(_ range: BufferRange) throws -> [Float] {
        try backend.readFloats(range.buffer, offset: range.offset, count: range.count)
    }

    /// True when every guard value around every float operand is intact.
    func guardsIntact() throws -> Bool {
        for range in guarded {
            let before = try backend.readFloats(range.buffer, offset: 0, count: Self.leading)
            let after = try backend.readFloats(range.buffer, offset: range.offset + range.count, count: Self.trailing)
            if (before + after).contains(where: { $0 != Self.guardValue }) { return false }
        }
        return true
    }
}

/// A kernel built on some backend, with the ranges to read back afterwards.
struct KernelCase {
    var kernel: Kernel
    var outputs: [BufferRange]
}

/// Runs the same kernel (built by `build` from the same seeded data) on the CPU reference and
/// on Vulkan, and returns each output as (reference, vulkan).
func compareBackends(_ build: (Workspace) throws -> KernelCase) throws -> [(reference: [Float], vulkan: [Float])] {
    guard let vulkan = Backends.vulkan else { return [] }
    let cpuSpace = Workspace(Backends.cpu)
    let gpuSpace = Workspace(vulkan)
    let cpuCase = try build(cpuSpace)
    let gpuCase = try build(gpuSpace)
    try Backends.cpu.run(cpuCase.kernel)
    try vulkan.run(gpuCase.kernel)
    #expect(try gpuSpace.guardsIntact(), "Vulkan wrote outside an operand range")
    #expect(try cpuSpace.guardsIntact(), "CPU reference wrote outside an operand range")
    var result: [(reference: [Float], vulkan: [Float])] = []
    for (cpuRange, gpuRange) in zip(cpuCase.outputs, gpuCase.outputs) {
        result.append((try cpuSpace.read(cpuRange), try gpuSpace.read(gpuRange)))
    }
    return result
}

/// Elementwise |actual - expected| <= atol + rtol * |expected|; NaN must match NaN.
func expectClose(_ actual: [Float], _ expected: [Float], atol: Float, rtol: Float, _ what: String,
                 sourceLocation: SourceLocation = #_sourceLocation) {
    guard actual.count == expected.count else {
        Issue.record("\(what): \(actual.count) values, expected \(expected.count)", sourceLocation: sourceLocation)
        return
    }
    var worst: (index: Int, error: Float)?
    var failures = 0
    for i in actual.indices {
        let (a, e) = (actual[i], expected[i])
        if a.isNaN || e.isNaN {
            if a.isNaN != e.isNaN { failures += 1; worst = worst ?? (i, .infinity) }
            continue
        }
        let error = abs(a - e)
        if error > atol + rtol * abs(e) {
            failures += 1
            if worst.map({ error > $0.error }) ?? true { worst = (i, error) }
        }
    }
    if let worst {
        Issue.record("\(what): \(failures)/\(actual.count) values off; worst at \(worst.index): got \(actual[worst.index]), expected \(expected[worst.index]) (atol \(atol), rtol \(rtol))",
                     sourceLocation: sourceLocation)
    }
}

/// Runs one kernel and returns the error it was rejected with, or nil if it ran.
func rejection(of kernel: Kernel, on backend: any ComputeBackend) -> GPUError? {
    do {
        try backend.run(kernel)
        return nil
    } catch {
        return error
    }
}
