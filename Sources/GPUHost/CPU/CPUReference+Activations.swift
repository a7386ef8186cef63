#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

extension CPUReference {
    private static let sqrt2OverPi = 0.7978845608028654
    private static let geluCoefficient = 0.044715

    static func activation(_ p: ActivationParams, input: [Float]) -> [Float] {
        switch p.activation {
        case .relu:
            return input.map { Swift.max($0, 0) }
        case .gelu:
            return input.map { value in
                let x = Double(value)
                return Float(0.5 * x * (1 + tanh(sqrt2OverPi * (x + geluCoefficient * x * x * x))))
            }
        }
    }

    static func activationBackward(_ p: ActivationBackwardParams, input: [Float], outputGradient: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: input.count)
        for i in input.indices {
            let g = outputGradient[i]
            switch p.activation {
            case .relu:
                out[i] = input[i] > 0 ? g : 0
            case .gelu:
                let x = Double(input[i])
                let t = tanh(sqrt2OverPi * (x + geluCoefficient * x * x * x))
                let du = sqrt2OverPi * (1 + 3 * geluCoefficient * x * x)
                out[i] = Float(Double(g) * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du))
            }
        }
        return out
    }

    static func softmax(_ p: SoftmaxParams, input: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: input.count)
        for r in 0 ..< p.rows {
            let row = input[r * p.columns ..< (r + 1) * p.columns]
            let maximum = Double(row.max() ?? 0)
            let total = row.reduce(0.0) { $0 + exp(Double($1) - maximum) }
            for j in 0 ..< p.columns {
                out[r * p.columns + j] = Float(exp(Double(input[r * p.columns + j]) - maximum) / total)
            }
        }
        return out
    }

    /// Returns (loss per row, gradient); see `SoftmaxCrossEntropyParams` for the invalid-label rule.
    static func softmaxCrossEntropy(_ p: SoftmaxCrossEntropyParams, logits: [Float], labels: [UInt32])
        -> (loss: [Float], gradient: [Float])
    {
        var loss = [Float](repeating: 0, count: p.rows)
        var gradient = [Float](repeating: 0, count: logits.count)
        for r in 0 ..< p.rows {
            let base = r * p.classes
            let row = logits[base ..< base + p.classes]
            let maximum = Double(row.max() ?? 0)
            let total = row.reduce(0.0) { $0 + exp(Double($1) - maximum) }
            let label = Int(labels[r])
            let valid = label < p.classes
            for j in 0 ..< p.classes {
                let probability = exp(Double(logits[base + j]) - maximum) / total
                let target: Double = (valid && j == label) ? 1 : 0
                gradient[base + j] = Float((probability - target) * Double(p.gradientScale))
            }
            loss[r] = valid ? Float(maximum + log(total) - Double(logits[base + label])) : .nan
        }
        return (loss, gradient)
    }
}
