extension CPUReference {
    /// Direct convolution written from the definition; the backward passes below are its
    /// exact adjoints, which the tests check with <conv(x), dy> == <x, conv^T(dy)>.
    static func conv2dForward(_ s: Conv2DShape, input: [Float], weight: [Float], bias: [Float]?) -> [Float] {
        let (P, Q) = (s.outHeight, s.outWidth)
        var out = [Float](repeating: 0, count: s.batch * s.outChannels * P * Q)
        for n in 0 ..< s.batch {
            for k in 0 ..< s.outChannels {
                for p in 0 ..< P {
                    for q in 0 ..< Q {
                        var acc = Double(bias?[k] ?? 0)
                        for c in 0 ..< s.inChannels {
                            for r in 0 ..< s.kernelHeight {
                                let h = p * s.strideY - s.padY + r
                                guard h >= 0, h < s.height else { continue }
                                for t in 0 ..< s.kernelWidth {
                                    let w = q * s.strideX - s.padX + t
                                    guard w >= 0, w < s.width else { continue }
                                    acc += Double(input[((n * s.inChannels + c) * s.height + h) * s.width + w])
                                        * Double(weight[((k * s.inChannels + c) * s.kernelHeight + r) * s.kernelWidth + t])
                                }
                            }
                        }
                        out[((n * s.outChannels + k) * P + p) * Q + q] = Float(acc)
                    }
                }
            }
        }
        return out
    }

    /// Scatters each output gradient back through the taps that produced it (the transpose
    /// of the forward gather), accumulating in Double.
    static func conv2dBackwardData(_ s: Conv2DShape, outputGradient: [Float], weight: [Float]) -> [Float] {
        let (P, Q) = (s.outHeight, s.outWidth)
        var acc = [Double](repeating: 0, count: s.batch * s.inChannels * s.height * s.width)
        for n in 0 ..< s.batch {
            for k in 0 ..< s.outChannels {
                for p in 0 ..< P {
                    for q in 0 ..< Q {
                        let g = Double(outputGradient[((n * s.outChannels + k) * P + p) * Q + q])
                        for c in 0 ..< s.inChannels {
                            for r in 0 ..< s.kernelHeight {
                                let h = p * s.strideY - s.padY + r
                                guard h >= 0, h < s.height else { continue }
                                for t in 0 ..< s.kernelWidth {
                                    let w = q * s.strideX - s.padX + t
                                    guard w >= 0, w < s.width else { continue }
                                    acc[((n * s.inChannels + c) * s.height + h) * s.width + w] +=
                                        g * Double(weight[((k * s.inChannels + c) * s.kernelHeight + r) * s.kernelWidth + t])
                                }
                            }
                        }
                    }
                }
            }
        }
        return acc.map { Float($0) }
    }

    static func conv2dBackwardFilter(_ s: Conv2DShape, input: [Float], outputGradient: [Float])
        -> (weight: [Float], bias: [Float])
    {
        let (P, Q) = (s.outHeight, s.outWidth)
        var dw = [Double](repeating: 0, count: s.outChannels * s.inChannels * s.kernelHeight * s.kernelWidth)
        var db = [Double](repeating: 0, count: s.outChannels)
        for n in 0 ..< s.batch {
            for k in 0 ..< s.outChannels {
                for p in 0 ..< P {
                    for q in 0 ..< Q {
                        let g = Double(outputGradient[((n * s.outChannels + k) * P + p) * Q + q])
                        db[k] += g
                        for c in 0 ..< s.inChannels {
                            for r in 0 ..< s.kernelHeight {
                                let h = p * s.strideY - s.padY + r
                                guard h >= 0, h < s.height else { continue }
                                for t in 0 ..< s.kernelWidth {
                                    let w = q * s.strideX - s.padX + t
                                    guard w >= 0, w < s.width else { continue }
                                    dw[((k * s.inChannels + c) * s.kernelHeight + r) * s.kernelWidth + t] +=
                                        g * Double(input[((n * s.inChannels + c) * s.height + h) * s.width + w])
                                }
                            }
                        }
                    }
                }
            }
        }
        return (dw.map { Float($0) }, db.map { Float($0) })
    }
}
