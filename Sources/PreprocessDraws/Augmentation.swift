// The preprocess pipeline's randomness, defined exactly so every place that runs the pipeline
// draws the same numbers: which records make each batch (a shuffle per epoch) and each image's
// crop offset and flip. The MLaaS `preprocess` service (on the GPU), the guest's CPU reference
// (Guest/lib/preprocess_ref.c, in C) and the native CNN job's host-side loader (MLWorkloads)
// all use these rules, so for one seed they produce the same batches; docs/mlaas.md states them.
// A module of its own because a service module may link nothing of the host's, and the native
// job must not link a service module.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, and the same in C and Swift bit for bit.
public struct SplitMix64 {
    public var state: UInt64

    public init(state: UInt64) { self.state = state }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// What a draw depends on besides the seed: the sizes a crop chooses its offset within, and
/// whether images may be flipped.
public struct AugmentationGeometry: Equatable, Sendable {
    public var resizeHeight: Int
    public var resizeWidth: Int
    /// 0: no crop.
    public var cropHeight: Int
    public var cropWidth: Int
    public var padding: Int
    public var flip: Bool

    public init(resizeHeight: Int, resizeWidth: Int, cropHeight: Int, cropWidth: Int, padding: Int, flip: Bool) {
        self.resizeHeight = resizeHeight
        self.resizeWidth = resizeWidth
        self.cropHeight = cropHeight
        self.cropWidth = cropWidth
        self.padding = padding
        self.flip = flip
    }

    public var hasCrop: Bool { cropHeight > 0 }
}

public enum Augmentation {
    /// Multipliers that spread epochs and positions over the generator's seeds.
    static let epochStride: UInt64 = 0xD1B5_4A32_D192_ED03
    static let positionStride: UInt64 = 0x8CB9_2BA7_2F3D_8DD7

    /// The order of the records in `epoch`: Fisher-Yates from the last element down, each swap
    /// partner `next() % (i + 1)`, on a generator seeded `seed ^ epoch * epochStride`.
    public static func permutation(records: Int, seed: UInt64, epoch: UInt64) -> [UInt32] {
        var order = (0 ..< records).map { UInt32($0) }
        var random = SplitMix64(state: seed ^ (epoch &* epochStride))
        var i = records - 1
        while i > 0 {
            let j = Int(random.next() % UInt64(i + 1))
            order.swapAt(i, j)
            i -= 1
        }
        return order
    }

    public struct Draw: Equatable, Sendable {
        public var top = 0
        public var left = 0
        public var flip = false

        public init(top: Int = 0, left: Int = 0, flip: Bool = false) {
            self.top = top
            self.left = left
            self.flip = flip
        }
    }

    /// The image at `position` of `epoch`: on a generator seeded
    /// `seed ^ epoch * epochStride ^ (position + 1) * positionStride`, with a crop first
    /// `top = next() % (resizeHeight + 2 padding - cropHeight + 1)`, then `left` likewise,
    /// then with flip on `flip = next() & 1`.
    public static func draw(_ g: AugmentationGeometry, seed: UInt64, epoch: UInt64, position: UInt64) -> Draw {
        var random = SplitMix64(state: seed ^ (epoch &* epochStride) ^ ((position &+ 1) &* positionStride))
        var draw = Draw()
        if g.hasCrop {
            draw.top = Int(random.next() % UInt64(g.resizeHeight + 2 * g.padding - g.cropHeight + 1))
            draw.left = Int(random.next() % UInt64(g.resizeWidth + 2 * g.padding - g.cropWidth + 1))
        }
        if g.flip { draw.flip = random.next() & 1 == 1 }
        return draw
    }
}
