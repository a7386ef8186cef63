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

    // MARK: every variant

    /// Where each operand starts in its buffer. The shaders read an operand with vec4 loads
    /// only when its offset and leading dimension are multiples of 4, and C with vec4
    /// stores when cOff and n are; Workspace's fixed offset of 5 never allows that.
    struct Layout: CustomTestStringConvertible, Sendable {
        var aOffset: Int, bOffset: Int, cOffset: Int
        var testDescription: String { "offsets a \(aOffset) b \(bOffset) c \(cOffset)" }
        static let aligned = Layout(aOffset: 4, bOffset: 8, cOffset: 12)
        static let unaligned = Layout(aOffset: 5, bOffset: 3, cOffset: 1)
        /// A and C vec4 (where their dimensions allow), B scalar.
        static let mixed = Layout(aOffset: 8, bOffset: 5, cOffset: 4)
        static let all = [aligned, unaligned, mixed]
    }

    // Sizes around both tiles (64, 128) and both slice depths (16, 8); multiples of 4 (132,
    // 260, 36, 68) reach the vec4 paths under aligned offsets, odd ones the scalar fallback.
    static let variantShapes: [Shape] = [
        Shape(m: 1, n: 1, k: 1),
        Shape(m: 7, n: 7, k: 7),
        Shape(m: 63, n: 65, k: 33),
        Shape(m: 65, n: 63, k: 17),
        Shape(m: 127, n: 129, k: 9),
        Shape(m: 129, n: 127, k: 65),
        Shape(m: 200, n: 300, k: 17),
        Shape(m: 64, n: 64, k: 16),
        Shape(m: 128, n: 128, k: 128),
        Shape(m: 132, n: 260, k: 36),
        Shape(m: 130, n: 257, k: 1),
        Shape(m: 33, n: 68, k: 1000),
        Shape(m: 129, n: 65, k: 68, transposeA: true),
        Shape(m: 65, n: 129, k: 68, transposeB: true),
        Shape(m: 132, n: 260, k: 36, transposeA: true, transposeB: true),
        Shape(m: 200, n: 300, k: 17, transposeA: true, transposeB: true),
        Shape(m: 129, n: 131, k: 40, alpha: -0.5, beta: 0.25),
        Shape(m: 132, n: 260, k: 36, transposeA: true, alpha: 2, beta: -1),
        Shape(m: 68, n: 136, k: 20, transposeB: true, alpha: 0.5, beta: 1),
    ]

    /// Runs `s` on Vulkan with the given variant forced and the operands at `layout`'s offsets
    /// (guard values around each), and checks it against CPUReference.sgemm.
    func checkVariant(_ variant: SGEMMVariant, _ s: Shape, _ layout: Layout) throws {
        guard let vulkan = Backends.vulkan else { return }
        var random = TestRandom(seed: UInt64(s.m * 1_000_003 + s.n * 1009 + s.k))
        let aValues = random.floats(s.m * s.k)
        let bValues = random.floats(s.k * s.n)
        let cValues = random.floats(s.m * s.n)
        let trailing = 3
        var owned: [BufferID] = []
        defer { for id in owned { try? vulkan.destroyBuffer(id) } }
        func place(_ values: [Float], at offset: Int) throws -> BufferRange {
            let guardValues = [Float](repeating: Workspace.guardValue, count: offset)
            let id = try vulkan.makeBuffer(
                floats: guardValues + values + [Float](repeating: Workspace.guardValue, count: trailing))
            owned.append(id)
            return BufferRange(id, offset: offset, count: values.count)
        }
        let a = try place(aValues, at: layout.aOffset)
        let b = try place(bValues, at: layout.bOffset)
        let c = try place(cValues, at: layout.cOffset)
        let params = SGEMMParams(m: s.m, n: s.n, k: s.k, transposeA: s.transposeA, transposeB: s.transposeB,
                                 alpha: s.alpha, beta: s.beta, a: a, b: b, c: c)
        let lowered = SGEMMVariant.$forced.withValue(variant) {
            Kernel.sgemm(params).shaderDispatches(operands: [], maxGroupsX: 65535)
        }
        #expect(lowered.map(\.shader) == [variant.shader], "the forced variant is the one lowered")
        try SGEMMVariant.$forced.withValue(variant) {
            _ = try vulkan.run(.sgemm(params))
        }
        let expected = CPUReference.sgemm(params, a: aValues, b: bValues, c: cValues)
        let what = "sgemm \(variant) \(s.testDescription) \(layout.testDescription)"
        let atol = 1e-5 + 2e-6 * Float(s.k)
        expectClose(try vulkan.readFloats(c.buffer, offset: c.offset, count: c.count), expected,
                    atol: atol, rtol: 1e-4, what)
        for range in [a, b, c] {
            let before = try vulkan.readFloats(range.buffer, offset: 0, count: range.offset)
            let after = try vulkan.readFloats(range.buffer, offset: range.offset + range.count, count: trailing)
            #expect((before + after).allSatisfy { $0 == Workspace.guardValue }, "\(what): wrote outside an operand")
        }
    }

    @Test("every variant matches the CPU reference at every offset alignment",
          .enabled(if: Backends.hasVulkan), arguments: SGEMMVariant.allCases, variantShapes)
    func variantMatchesReference(_ variant: SGEMMVariant, _ s: Shape) throws {
        for layout in Layout.all {
            try checkVariant(variant, s, layout)
        }
    }

    @Test("beta = 0 ignores NaN already in C, in every variant and on both store paths",
          .enabled(if: Backends.hasVulkan), arguments: SGEMMVariant.allCases)
    func variantBetaZeroIgnoresC(_ variant: SGEMMVariant) throws {
        guard let vulkan = Backends.vulkan else { return }
        // n = 8 with C at offset 0 takes the vec4 store; n = 7 the scalar one.
        for n in [8, 7] {
            let a = try vulkan.makeBuffer(floats: [1, 2])
            let b = try vulkan.makeBuffer(floats: [Float](repeating: 3, count: 2 * n))
            let c = try vulkan.makeBuffer(floats: [Float](repeating: .nan, count: n))
            defer { for id in [a, b, c] { try? vulkan.destroyBuffer(id) } }
            try SGEMMVariant.$forced.withValue(variant) {
                _ = try vulkan.run(.sgemm(SGEMMParams(m: 1, n: n, k: 2, beta: 0, a: BufferRange(a, count: 2),
                                                      b: BufferRange(b, count: 2 * n), c: BufferRange(c, count: n))))
            }
            #expect(try vulkan.readFloats(c, count: n) == [Float](repeating: 9, count: n), "\(variant) n \(n)")
        }
    }

    /// A shape large enough that the 128x128 variant is chosen without forcing, with k small
    /// so the Double reference stays quick; partial tiles on both edges, k off the slice depth.
    @Test("the automatically chosen 128x128 variant matches the CPU reference", .enabled(if: Backends.hasVulkan))
    func automaticTile128MatchesReference() throws {
        let s = Shape(m: 1500, n: 1604, k: 9, alpha: 1.5, beta: -0.5)
        #expect(SGEMMVariant.select(m: s.m, n: s.n, k: s.k) == .tile128)
        for layout in [Layout.aligned, Layout.unaligned] {
            try checkVariant(SGEMMVariant.select(m: s.m, n: s.n, k: s.k), s, layout)
        }
    }

    // MARK: selection

    @Test("selection: 64x64 tiles until there are enough 128x128 tiles to fill a large GPU")
    func selection() {
        #expect(SGEMMVariant.select(m: 512, n: 512, k: 512) == .tile64)
        #expect(SGEMMVariant.select(m: 1024, n: 1024, k: 1024) == .tile64)
        #expect(SGEMMVariant.select(m: 1536, n: 1536, k: 64) == .tile128)
        #expect(SGEMMVariant.select(m: 2048, n: 2048, k: 2048) == .tile128)
        #expect(SGEMMVariant.select(m: 4096, n: 4096, k: 4096) == .tile128)
        // Skinny results stay on 64x64 tiles however many there are.
        #expect(SGEMMVariant.select(m: 64, n: 1 << 20, k: 64) == .tile64)
        #expect(SGEMMVariant.select(m: 1 << 20, n: 100, k: 64) == .tile64)
        // Exactly at the threshold.
        #expect(SGEMMVariant.select(m: 128 * 16, n: 128 * 8, k: 1) == .tile128)
        #expect(SGEMMVariant.select(m: 128 * 16, n: 128 * 8 - 128, k: 1) == .tile64)
    }

    @Test("the plan names each variant's shader and one workgroup per tile",
          arguments: [(512, "sgemm", 64), (2048, "sgemm_tile128", 256), (1000, "sgemm", 256)])
    func plannedDispatch(_ size: Int, _ shader: String, _ groups: Int) throws {
        let ids = (1 ... 3).map { BufferID(rawValue: UInt64($0)) }
        let bytes = size * size * 4
        let kernel = Kernel.sgemm(SGEMMParams(m: size, n: size, k: size, a: BufferRange(ids[0], count: size * size),
                                              b: BufferRange(ids[1], count: size * size),
                                              c: BufferRange(ids[2], count: size * size)))
        let plan = try kernel.dispatchDescriptions(buffers: Dictionary(uniqueKeysWithValues: ids.map { ($0, bytes) }),
                                                   order: ids, maxGroupsX: 65535)
        #expect(plan.count == 1)
        #expect(plan.first?.shader == shader)
        #expect(plan.first.map { Int($0.groupsX) * Int($0.groupsY) } == groups)
        // A small maxGroupsX folds the same tiles into a 2-D grid (the shaders number tiles
        // y * width + x and skip the surplus).
        let folded = try kernel.dispatchDescriptions(buffers: Dictionary(uniqueKeysWithValues: ids.map { ($0, bytes) }),
                                                     order: ids, maxGroupsX: 7)
        #expect(folded.first.map { $0.groupsX == 7 && Int($0.groupsY) == (groups + 6) / 7 } == true)
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
