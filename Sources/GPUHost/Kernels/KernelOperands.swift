/// The shape rules of every kernel: which dimensions must be positive, which scalars finite,
/// and which element count each operand must have. Buffer bounds and aliasing are checked
/// generically from this list in `Kernel.validate(capacity:)`.
extension Kernel {
    public func operands() throws(KernelValidationError) -> [KernelOperand] {
        let check = ShapeChecker(kernel: name)
        switch self {
        case let .sgemm(p):
            let m = try check.positive("m", p.m)
            let n = try check.positive("n", p.n)
            let k = try check.positive("k", p.k)
            try check.finite("alpha", p.alpha)
            try check.finite("beta", p.beta)
            return [
                KernelOperand(name: "a", range: p.a, access: .read,
                              expectedCount: try check.product("m*k", m, k), pointwise: false),
                KernelOperand(name: "b", range: p.b, access: .read,
                              expectedCount: try check.product("k*n", k, n), pointwise: false),
                KernelOperand(name: "c", range: p.c, access: p.beta == 0 ? .write : .readWrite,
                              expectedCount: try check.product("m*n", m, n), pointwise: true),
            ]

        case let .biasAdd(p):
            let outer = try check.positive("outer", p.outer)
            let channels = try check.positive("channels", p.channels)
            let inner = try check.positive("inner", p.inner)
            return [
                KernelOperand(name: "data", range: p.data, access: .readWrite,
                              expectedCount: try check.product("outer*channels*inner", outer, channels, inner),
                              pointwise: true),
                KernelOperand(name: "bias", range: p.bias, access: .read, expectedCount: channels,
                              pointwise: false),
            ]

        case let .activation(p):
            let count = try check.positive("count", p.count)
            return [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: count, pointwise: true),
                KernelOperand(name: "output", range: p.output, access: .write, expectedCount: count, pointwise: true),
            ]

        case let .activationBackward(p):
            let count = try check.positive("count", p.count)
            return [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: count, pointwise: true),
                KernelOperand(name: "outputGradient", range: p.outputGradient, access: .read,
                              expectedCount: count, pointwise: true),
                KernelOperand(name: "inputGradient", range: p.inputGradient, access: .write,
                              expectedCount: count, pointwise: true),
            ]

        case let .softmax(p):
            let rows = try check.positive("rows", p.rows)
            let columns = try check.positive("columns", p.columns)
            let count = try check.product("rows*columns", rows, columns)
            return [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: count, pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write, expectedCount: count, pointwise: false),
            ]

        case let .softmaxCrossEntropy(p):
            let rows = try check.positive("rows", p.rows)
            let classes = try check.positive("classes", p.classes)
            try check.finite("gradientScale", p.gradientScale)
            let count = try check.product("rows*classes", rows, classes)
            return [
                KernelOperand(name: "logits", range: p.logits, access: .read, expectedCount: count, pointwise: false),
                KernelOperand(name: "labels", range: p.labels, element: .uint32, access: .read,
                              expectedCount: rows, pointwise: false),
                KernelOperand(name: "loss", range: p.loss, access: .write, expectedCount: rows, pointwise: false),
                KernelOperand(name: "logitsGradient", range: p.logitsGradient, access: .write,
                              expectedCount: count, pointwise: false),
            ]

        case let .reduce(p):
            let rows = try check.positive("rows", p.rows)
            let columns = try check.positive("columns", p.columns)
            return [
                KernelOperand(name: "input", range: p.input, access: .read,
                              expectedCount: try check.product("rows*columns", rows, columns), pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write,
                              expectedCount: p.axis == .perRow ? rows : columns, pointwise: false),
            ]

        case let .axpy(p):
            let count = try check.positive("count", p.count)
            try check.finite("alpha", p.alpha)
            return [
                KernelOperand(name: "x", range: p.x, access: .read, expectedCount: count, pointwise: true),
                KernelOperand(name: "y", range: p.y, access: .readWrite, expectedCount: count, pointwise: true),
            ]

        case let .scale(p):
            let count = try check.positive("count", p.count)
            try check.finite("alpha", p.alpha)
            return [
                KernelOperand(name: "x", range: p.x, access: .readWrite, expectedCount: count, pointwise: true),
            ]

        case let .conv2dForward(p):
            let dims = try ConvDimensions(p.shape, check)
            var operands = [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: dims.inputCount, pointwise: false),
                KernelOperand(name: "weight", range: p.weight, access: .read, expectedCount: dims.weightCount, pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write, expectedCount: dims.outputCount, pointwise: false),
            ]
            if let bias = p.bias {
                operands.append(KernelOperand(name: "bias", range: bias, access: .read,
                                              expectedCount: dims.outChannels, pointwise: false))
            }
            return operands

        case let .conv2dBackwardData(p):
            let dims = try ConvDimensions(p.shape, check)
            return [
                KernelOperand(name: "outputGradient", range: p.outputGradient, access: .read,
                              expectedCount: dims.outputCount, pointwise: false),
                KernelOperand(name: "weight", range: p.weight, access: .read, expectedCount: dims.weightCount, pointwise: false),
                KernelOperand(name: "inputGradient", range: p.inputGradient, access: .write,
                              expectedCount: dims.inputCount, pointwise: false),
            ]

        case let .conv2dBackwardFilter(p):
            let dims = try ConvDimensions(p.shape, check)
            var operands = [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: dims.inputCount, pointwise: false),
                KernelOperand(name: "outputGradient", range: p.outputGradient, access: .read,
                              expectedCount: dims.outputCount, pointwise: false),
                KernelOperand(name: "weightGradient", range: p.weightGradient, access: .write,
                              expectedCount: dims.weightCount, pointwise: false),
            ]
            if let biasGradient = p.biasGradient {
                operands.append(KernelOperand(name: "biasGradient", range: biasGradient, access: .write,
                                              expectedCount: dims.outChannels, pointwise: false))
            }
            return operands

        case let .normalizeU8(p):
            let batch = try check.positive("batch", p.batch)
            let height = try check.positive("height", p.height)
            let width = try check.positive("width", p.width)
            let channels = try check.positive("channels", p.channels)
            guard channels <= NormalizeParams.maxChannels else {
                throw check.invalid("channels", "must be at most \(NormalizeParams.maxChannels) (is \(channels))")
            }
            guard p.mean.count == channels else {
                throw check.invalid("mean", "has \(p.mean.count) values for \(channels) channels")
            }
            guard p.std.count == channels else {
                throw check.invalid("std", "has \(p.std.count) values for \(channels) channels")
            }
            try check.finite("scale", p.scale)
            for (c, value) in p.mean.enumerated() { try check.finite("mean[\(c)]", value) }
            for (c, value) in p.std.enumerated() {
                try check.finite("std[\(c)]", value)
                if value == 0 { throw check.invalid("std[\(c)]", "is zero") }
            }
            let count = try check.product("batch*height*width*channels", batch, height, width, channels)
            return [
                KernelOperand(name: "input", range: p.input, element: .uint8, access: .read,
                              expectedCount: count, pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write, expectedCount: count, pointwise: false),
            ]

        case let .crop(p):
            let planes = try check.product("batch*channels", check.positive("batch", p.batch),
                                           check.positive("channels", p.channels))
            let height = try check.positive("height", p.height)
            let width = try check.positive("width", p.width)
            let outHeight = try check.positive("outHeight", p.outHeight)
            let outWidth = try check.positive("outWidth", p.outWidth)
            let top = try check.nonNegative("top", p.top)
            let left = try check.nonNegative("left", p.left)
            let padding = try check.nonNegative("padding", p.padding)
            guard padding <= CropParams.maxPadding else {
                throw check.invalid("padding", "must be at most \(CropParams.maxPadding) (is \(padding))")
            }
            try check.finite("padValue", p.padValue)
            // Every term is below 2^31, so these sums cannot overflow Int.
            guard top + outHeight <= height + 2 * padding else {
                throw check.invalid("top+outHeight", "\(top + outHeight) exceeds height \(height)"
                                    + (padding > 0 ? " + 2*padding \(padding)" : ""))
            }
            guard left + outWidth <= width + 2 * padding else {
                throw check.invalid("left+outWidth", "\(left + outWidth) exceeds width \(width)"
                                    + (padding > 0 ? " + 2*padding \(padding)" : ""))
            }
            var operands = [
                KernelOperand(name: "input", range: p.input, access: .read,
                              expectedCount: try check.product("input", planes, height, width), pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write,
                              expectedCount: try check.product("output", planes, outHeight, outWidth), pointwise: false),
            ]
            if let offsets = p.offsets {
                // The per-image offsets replace top and left.
                guard top == 0, left == 0 else { throw check.invalid("top/left", "must be 0 with per-image offsets") }
                operands.append(KernelOperand(name: "offsets", range: offsets, element: .uint32, access: .read,
                                              expectedCount: try check.product("offsets", p.batch, 3), pointwise: false))
            }
            return operands

        case let .flipHorizontal(p):
            let count = try check.product("batch*channels*height*width",
                                          check.positive("batch", p.batch), check.positive("channels", p.channels),
                                          check.positive("height", p.height), check.positive("width", p.width))
            return [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: count, pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write, expectedCount: count, pointwise: false),
            ]

        case let .resizeBilinear(p):
            let planes = try check.product("batch*channels", check.positive("batch", p.batch),
                                           check.positive("channels", p.channels))
            let height = try check.positive("height", p.height)
            let width = try check.positive("width", p.width)
            let outHeight = try check.positive("outHeight", p.outHeight)
            let outWidth = try check.positive("outWidth", p.outWidth)
            return [
                KernelOperand(name: "input", range: p.input, access: .read,
                              expectedCount: try check.product("input", planes, height, width), pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write,
                              expectedCount: try check.product("output", planes, outHeight, outWidth), pointwise: false),
            ]

        case let .maxPool2DForward(p):
            let dims = try PoolDimensions(p.shape, check)
            return [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: dims.inputCount, pointwise: false),
                KernelOperand(name: "output", range: p.output, access: .write, expectedCount: dims.outputCount, pointwise: false),
            ]

        case let .maxPool2DBackward(p):
            let dims = try PoolDimensions(p.shape, check)
            return [
                KernelOperand(name: "input", range: p.input, access: .read, expectedCount: dims.inputCount, pointwise: false),
                KernelOperand(name: "outputGradient", range: p.outputGradient, access: .read,
                              expectedCount: dims.outputCount, pointwise: false),
                KernelOperand(name: "inputGradient", range: p.inputGradient, access: .write,
                              expectedCount: dims.inputCount, pointwise: false),
            ]
        }
    }
}

/// A max-pool shape with every dimension checked and every count overflow-free. A side
/// shorter than the window would give an empty output: refused, as a zero dimension would be.
struct PoolDimensions {
    let inputCount: Int
    let outputCount: Int

    init(_ s: MaxPool2DShape, _ check: ShapeChecker) throws(KernelValidationError) {
        let n = try check.positive("batch", s.batch)
        let c = try check.positive("channels", s.channels)
        let h = try check.positive("height", s.height)
        let w = try check.positive("width", s.width)
        let window = MaxPool2DShape.window
        guard h >= window else { throw check.invalid("height", "\(h) is smaller than the \(window)x\(window) window") }
        guard w >= window else { throw check.invalid("width", "\(w) is smaller than the \(window)x\(window) window") }
        inputCount = try check.product("batch*channels*height*width", n, c, h, w)
        outputCount = try check.product("batch*channels*outHeight*outWidth", n, c, s.outHeight, s.outWidth)
    }
}

/// A convolution shape with every dimension checked and every count overflow-free.
struct ConvDimensions {
    let outChannels: Int
    let inputCount: Int
    let weightCount: Int
    let outputCount: Int

    init(_ s: Conv2DShape, _ check: ShapeChecker) throws(KernelValidationError) {
        let n = try check.positive("batch", s.batch)
        let c = try check.positive("inChannels", s.inChannels)
        let h = try check.positive("height", s.height)
        let w = try check.positive("width", s.width)
        let k = try check.positive("outChannels", s.outChannels)
        let r = try check.positive("kernelHeight", s.kernelHeight)
        let q = try check.positive("kernelWidth", s.kernelWidth)
        _ = try check.positive("strideY", s.strideY)
        _ = try check.positive("strideX", s.strideX)
        _ = try check.nonNegative("padY", s.padY)
        _ = try check.nonNegative("padX", s.padX)
        let outHeight = s.outHeight
        let outWidth = s.outWidth
        guard outHeight > 0 else {
            throw check.invalid("kernelHeight", "\(r) exceeds padded height \(h) + 2*\(s.padY)")
        }
        guard outWidth > 0 else {
            throw check.invalid("kernelWidth", "\(q) exceeds padded width \(w) + 2*\(s.padX)")
        }
        outChannels = k
        inputCount = try check.product("batch*inChannels*height*width", n, c, h, w)
        weightCount = try check.product("outChannels*inChannels*kernelHeight*kernelWidth", k, c, r, q)
        outputCount = try check.product("batch*outChannels*outHeight*outWidth", n, k, outHeight, outWidth)
    }
}
