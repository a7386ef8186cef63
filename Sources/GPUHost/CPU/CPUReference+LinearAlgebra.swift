/// Plain-Swift reference kernels. They are the oracle the Vulkan kernels are tested against,
/// and the fallback when there is no device, so they favour obviously-correct loops with
/// Double accumulation over speed. Inputs and outputs are arrays holding exactly the
/// operand's range; the backend copies them in and out.
enum CPUReference {}

extension CPUReference {
    static func sgemm(_ p: SGEMMParams, a: [Float], b: [Float], c: [Float]) -> [Float] {
        var result = [Float](repeating: 0, count: p.m * p.n)
        var row = [Double](repeating: 0, count: p.n)
        for i in 0 ..< p.m {
            for j in 0 ..< p.n { row[j] = 0 }
            for q in 0 ..< p.k {
                let av = Double(p.transposeA ? a[q * p.m + i] : a[i * p.k + q])
                if av == 0 { continue }
                for j in 0 ..< p.n {
                    row[j] += av * Double(p.transposeB ? b[j * p.k + q] : b[q * p.n + j])
                }
            }
            for j in 0 ..< p.n {
                let prior = p.beta == 0 ? 0 : Double(p.beta) * Double(c[i * p.n + j])
                result[i * p.n + j] = Float(Double(p.alpha) * row[j] + prior)
            }
        }
        return result
    }

    static func biasAdd(_ p: BiasAddParams, data: [Float], bias: [Float]) -> [Float] {
        var out = data
        for i in out.indices {
            out[i] += bias[(i / p.inner) % p.channels]
        }
        return out
    }

    static func reduce(_ p: ReduceParams, input: [Float]) -> [Float] {
        let outer = p.axis == .perRow ? p.rows : p.columns
        let inner = p.axis == .perRow ? p.columns : p.rows
        var out = [Float](repeating: 0, count: outer)
        for o in 0 ..< outer {
            var sum = 0.0
            var maximum = -Float.infinity
            for i in 0 ..< inner {
                let value = p.axis == .perRow ? input[o * p.columns + i] : input[i * p.columns + o]
                sum += Double(value)
                maximum = Swift.max(maximum, value)
            }
            out[o] = p.op == .sum ? Float(sum) : maximum
        }
        return out
    }

    static func axpy(_ p: AxpyParams, x: [Float], y: [Float]) -> [Float] {
        var out = y
        for i in out.indices {
            out[i] = p.alpha * x[i] + y[i]
        }
        return out
    }

    static func scale(_ p: ScaleParams, x: [Float]) -> [Float] {
        x.map { p.alpha * $0 }
    }
}
