// The pipeline's randomness, defined exactly so a guest's CPU reference (Guest/lib/
// preprocess_ref.c) draws the same numbers: which records make each batch (a shuffle per
// epoch) and each image's crop offset and flip. docs/mlaas.md states the same rules.

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, and the same in C and Swift bit for bit.
struct SplitMix64 {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

enum Augmentation {
    /// Multipliers that spread epochs and positions over the generator's seeds.
    static let epochStride: UInt64 = 0xD1B5_4A32_D192_ED03
    static let positionStride: UInt64 = 0x8CB9_2BA7_2F3D_8DD7

    /// The order of the records in `epoch`: Fisher-Yates from the last element down, each swap
    /// partner `next() % (i + 1)`, on a generator seeded `seed ^ epoch * epochStride`.
    static func permutation(records: Int, seed: UInt64, epoch: UInt64) -> [UInt32] {
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

    struct Draw: Equatable {
        var top = 0
        var left = 0
        var flip = false
    }

    /// The image at `position` of `epoch`: on a generator seeded
    /// `seed ^ epoch * epochStride ^ (position + 1) * positionStride`, with a crop first
    /// `top = next() % (resizeHeight + 2 padding - cropHeight + 1)`, then `left` likewise,
    /// then with flip on `flip = next() & 1`.
    static func draw(_ p: Pipeline, epoch: UInt64, position: UInt64) -> Draw {
        var random = SplitMix64(state: p.seed ^ (epoch &* epochStride) ^ ((position &+ 1) &* positionStride))
        var draw = Draw()
        if p.hasCrop {
            draw.top = Int(random.next() % UInt64(p.resizeHeight + 2 * p.padding - p.cropHeight + 1))
            draw.left = Int(random.next() % UInt64(p.resizeWidth + 2 * p.padding - p.cropWidth + 1))
        }
        if p.flip { draw.flip = random.next() & 1 == 1 }
        return draw
    }
}
