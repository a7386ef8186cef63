import PreprocessDraws

extension SplitMix64 {
    /// [-bound, bound), in the f32 steps the guest's splitmix64_uniform takes
    /// (Guest/include/malv/splitmix.h), so a native job starts from the guest's weights to the bit.
    mutating func uniform(_ bound: Float) -> Float {
        let t: Float = 2.0 * Float(next() >> 40)
        let u: Float = t * (1.0 / 16_777_216.0)
        return bound * (u - 1.0)
    }
}
