extension CPUReference {
    /// The window's argmax as an index into `input`: row-major visit, strictly greater
    /// replaces (MaxPool2DShape's rule, the one both maxpool2d shaders implement).
    private static func windowArgmax(_ input: [Float], plane: Int, oy: Int, ox: Int, _ s: MaxPool2DShape) -> Int {
        let base = (plane * s.height + 2 * oy) * s.width + 2 * ox
        var best = base
        for candidate in [base + 1, base + s.width, base + s.width + 1] where input[candidate] > input[best] {
            best = candidate
        }
        return best
    }

    static func maxPool2DForward(_ s: MaxPool2DShape, input: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: s.batch * s.channels * s.outHeight * s.outWidth)
        var at = 0
        for plane in 0 ..< s.batch * s.channels {
            for oy in 0 ..< s.outHeight {
                for ox in 0 ..< s.outWidth {
                    out[at] = input[windowArgmax(input, plane: plane, oy: oy, ox: ox, s)]
                    at += 1
                }
            }
        }
        return out
    }

    static func maxPool2DBackward(_ s: MaxPool2DShape, input: [Float], outputGradient: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: input.count)
        var at = 0
        for plane in 0 ..< s.batch * s.channels {
            for oy in 0 ..< s.outHeight {
                for ox in 0 ..< s.outWidth {
                    // Windows do not overlap (stride = window), so assignment is the sum.
                    out[windowArgmax(input, plane: plane, oy: oy, ox: ox, s)] = outputGradient[at]
                    at += 1
                }
            }
        }
        return out
    }
}
