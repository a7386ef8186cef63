@testable import GPUHost
import Testing

@Suite("SGEMM")
struct SGEMMTests {
    struct Shape: CustomTestStringConvertible, Sendable {
        var m: Int, n: Int, k: Int
        var transposeA = false, transposeB = false
        var alpha: Float = 1, beta: Float = 0
        var testDescription: String {
            "\(m)x\(n)x\(k)\(transposeA ? " Aᵀ" : "")\(transposeB ? " Bᵀ" : "") α=\(alpha) β=\(beta)"
        }
    }

    // Odd sizes straddle the 64x64x16 tiles (partial tiles on every edge); 1000 appears in
    // each position with the others kept small so the Double reference stays quick.
    static let shapes: [Shape] = [
        Shape(m: 1, n: 1, k: 1),
        Shape(m: 7, n: 33, k: 1),
        Shape(m: 33, n: 7, k: 33),
        Shape(m: 64, n: 64, k: 16),
        Shape(m: 65, n: 129, k: 17),
        Shape(m: 1000, n: 7, k: 33),
        Shape(m: 7, n: 1000, k: 33),
        Shape(m: 33, n: 7, k: 1000),
        Shape(m: 33, n: 65, k: 129, transposeA: true),
        Shape(m: 33, n: 65, k: 129, transposeB: true),
        Shape(m: 1000, n: 33, k: 7, transposeA: true, transposeB: true),
        Shape(m: 47, n: 31, k: 29, alpha: -0.5, beta: 0.25),
        Shape(m: 47, n: 31, k: 29, transposeA: true, transposeB: true, alpha: 2, beta: -1),
        Shape(m: 128, n: 128, k: 128),
    ]

    @Test("matches the CPU reference", .enabled(if: Backends.hasVulkan), arguments: shapes)
    func matchesReference(_ s: Shape) throws {
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(s.m * 1_000_003 + s.n * 1009 + s.k))
            let a = try space.floats(random.floats(s.m * s.k))
            let b = try space.floats(random.floats(s.k * s.n))
            let c = try space.floats(random.floats(s.m * s.n))
            return KernelCase(kernel: .sgemm(SGEMMParams(m: s.m, n: s.n, k: s.k, transposeA: s.transposeA,
                                                         transposeB: s.transposeB, alpha: s.alpha, beta: s.beta,
                                                         a: a, b: b, c: c)),
                              outputs: [c])
        }
        // Inputs in [-1, 1]: float32 accumulation over k terms drifts by O(k * 2^-24) at worst.
        let atol = 1e-5 + 2e-6 * Float(s.k)
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: atol, rtol: 1e-4, "sgemm \(s.testDescription)")
        }
    }

    @Test("reference computes a hand-checked product with transposes")
    func referenceByHand() throws {
        let space = Workspace(Backends.cpu)
        // A = [[1, 2, 3], [4, 5, 6]] stored transposed (3x2); B = [[1, 0], [0, 1], [1, 1]].
        let a = try space.floats([1, 4, 2, 5, 3, 6])
        let b = try space.floats([1, 0, 0, 1, 1, 1])
        let c = try space.floats([10, 20, 30, 40])
        try Backends.cpu.run(.sgemm(SGEMMParams(m: 2, n: 2, k: 3, transposeA: true, alpha: 2, beta: 0.5,
                                                a: a, b: b, c: c)))
        // A·B = [[4, 5], [10, 11]] → 2·AB + 0.5·C.
        #expect(try space.read(c) == [13, 20, 35, 42])
    }

    @Test("beta = 0 ignores NaN already in C", arguments: Backends.all)
    func betaZeroIgnoresC(_ backend: any ComputeBackend) throws {
        let space = Workspace(backend)
        let a = try space.floats([1, 2])
        let b = try space.floats([3, 4])
        let c = try space.floats([.nan])
        try backend.run(.sgemm(SGEMMParams(m: 1, n: 1, k: 2, beta: 0, a: a, b: b, c: c)))
        #expect(try space.read(c) == [11])
    }
}
