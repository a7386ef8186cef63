/// Moves a validated kernel's operands out of host buffers, runs the reference function and
/// stores the results back.
struct CPUKernelRunner {
    let buffers: [BufferID: CPUBuffer]

    func run(_ kernel: Kernel) throws(GPUError) {
        switch kernel {
        case let .sgemm(p):
            try store(CPUReference.sgemm(p, a: floats(p.a), b: floats(p.b), c: floats(p.c)), p.c)
        case let .biasAdd(p):
            try store(CPUReference.biasAdd(p, data: floats(p.data), bias: floats(p.bias)), p.data)
        case let .activation(p):
            try store(CPUReference.activation(p, input: floats(p.input)), p.output)
        case let .activationBackward(p):
            try store(CPUReference.activationBackward(p, input: floats(p.input),
                                                      outputGradient: floats(p.outputGradient)), p.inputGradient)
        case let .softmax(p):
            try store(CPUReference.softmax(p, input: floats(p.input)), p.output)
        case let .softmaxCrossEntropy(p):
            let result = CPUReference.softmaxCrossEntropy(p, logits: try floats(p.logits),
                                                          labels: try buffer(p.labels).load(p.labels, as: UInt32.self))
            try store(result.loss, p.loss)
            try store(result.gradient, p.logitsGradient)
        case let .reduce(p):
            try store(CPUReference.reduce(p, input: floats(p.input)), p.output)
        case let .axpy(p):
            try store(CPUReference.axpy(p, x: floats(p.x), y: floats(p.y)), p.y)
        case let .scale(p):
            try store(CPUReference.scale(p, x: floats(p.x)), p.x)
        case let .conv2dForward(p):
            let bias: [Float]? = try p.bias.map { range throws(GPUError) in try floats(range) }
            try store(CPUReference.conv2dForward(p.shape, input: floats(p.input), weight: floats(p.weight),
                                                 bias: bias), p.output)
        case let .conv2dBackwardData(p):
            try store(CPUReference.conv2dBackwardData(p.shape, outputGradient: floats(p.outputGradient),
                                                      weight: floats(p.weight)), p.inputGradient)
        case let .conv2dBackwardFilter(p):
            let result = CPUReference.conv2dBackwardFilter(p.shape, input: try floats(p.input),
                                                           outputGradient: try floats(p.outputGradient))
            try store(result.weight, p.weightGradient)
            if let biasGradient = p.biasGradient {
                try store(result.bias, biasGradient)
            }
        case let .normalizeU8(p):
            try store(CPUReference.normalizeU8(p, input: buffer(p.input).load(p.input, as: UInt8.self)), p.output)
        case let .crop(p):
            let offsets = try p.offsets.map { range throws(GPUError) in try buffer(range).load(range, as: UInt32.self) } ?? []
            try store(CPUReference.crop(p, input: floats(p.input), offsets: offsets), p.output)
        case let .flipHorizontal(p):
            try store(CPUReference.flipHorizontal(p, input: floats(p.input)), p.output)
        case let .resizeBilinear(p):
            try store(CPUReference.resizeBilinear(p, input: floats(p.input)), p.output)
        case let .maxPool2DForward(p):
            try store(CPUReference.maxPool2DForward(p.shape, input: floats(p.input)), p.output)
        case let .maxPool2DBackward(p):
            try store(CPUReference.maxPool2DBackward(p.shape, input: floats(p.input),
                                                     outputGradient: floats(p.outputGradient)), p.inputGradient)
        }
    }

    private func buffer(_ range: BufferRange) throws(GPUError) -> CPUBuffer {
        guard let storage = buffers[range.buffer] else { throw .unknownBuffer(range.buffer) }
        return storage
    }

    private func floats(_ range: BufferRange) throws(GPUError) -> [Float] {
        try buffer(range).load(range, as: Float.self)
    }

    private func store(_ values: [Float], _ range: BufferRange) throws(GPUError) {
        try buffer(range).store(values, at: range)
    }
}
