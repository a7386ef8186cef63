/// One vkCmdDispatch worth of work: which shader, which buffer goes to each binding, the
/// push-constant words (in the order of the shader's `Params` block) and the group grid.
/// Two shapes of grid: barrier-free elementwise shaders walk their items grid-stride, so a
/// 1-D grid capped at the device limit covers any size; shaders that cooperate through
/// shared memory own one item (tile, row, filter element) per workgroup, numbered
/// y * width + x across a 2-D grid. Validation caps items below 2^31, so y stays under
/// 32769, inside Vulkan's guaranteed minimum of 65535.
struct ShaderDispatch {
    var shader: ShaderKernel
    var bindings: [BufferID]
    var pushConstants: [UInt32]
    var groups: (x: UInt32, y: UInt32)
    /// The operands this dispatch touches, for barrier planning.
    var accesses: [KernelOperand]
}

extension Kernel {
    /// Lowers a validated kernel to shader dispatches. `operands` is what validation
    /// returned; `maxGroupsX` is the device's maxComputeWorkGroupCount[0].
    func shaderDispatches(operands: [KernelOperand], maxGroupsX: UInt32) -> [ShaderDispatch] {
        // Validation bounded every count by Kernel.maxElements (< 2^31), so the conversions
        // below are exact.
        func u(_ value: Int) -> UInt32 { UInt32(truncatingIfNeeded: value) }
        func f(_ value: Float) -> UInt32 { value.bitPattern }
        let widest = Swift.max(1, Int(maxGroupsX))
        /// Grid-stride shaders with 256 invocations per group.
        func elementwise(_ items: Int) -> (x: UInt32, y: UInt32) {
            (UInt32(truncatingIfNeeded: Swift.max(1, Swift.min((items + 255) / 256, widest))), 1)
        }
        /// One workgroup per item.
        func perItem(_ items: Int) -> (x: UInt32, y: UInt32) {
            let x = Swift.max(1, Swift.min(items, widest))
            return (UInt32(truncatingIfNeeded: x), UInt32(truncatingIfNeeded: (items + x - 1) / x))
        }
        func touching(_ names: String...) -> [KernelOperand] {
            operands.filter { names.contains($0.name) }
        }
        func single(_ shader: ShaderKernel, _ bindings: [BufferRange], _ push: [UInt32], _ groups: (x: UInt32, y: UInt32))
            -> [ShaderDispatch]
        {
            [ShaderDispatch(shader: shader, bindings: bindings.map(\.buffer), pushConstants: push,
                            groups: groups, accesses: operands)]
        }

        switch self {
        case let .sgemm(p):
            let variant = SGEMMVariant.forced ?? SGEMMVariant.select(m: p.m, n: p.n, k: p.k)
            return single(variant.shader, [p.a, p.b, p.c],
                          [u(p.m), u(p.n), u(p.k), p.transposeA ? 1 : 0, p.transposeB ? 1 : 0,
                           u(p.a.offset), u(p.b.offset), u(p.c.offset), f(p.alpha), f(p.beta)],
                          perItem(variant.tiles(m: p.m, n: p.n)))

        case let .biasAdd(p):
            let count = p.outer * p.channels * p.inner
            return single(.biasAdd, [p.data, p.bias],
                          [u(count), u(p.channels), u(p.inner), u(p.data.offset), u(p.bias.offset)],
                          elementwise(count))

        case let .activation(p):
            return single(.activation, [p.input, p.output],
                          [p.activation.shaderCode, u(p.count), u(p.input.offset), u(p.output.offset)],
                          elementwise(p.count))

        case let .activationBackward(p):
            return single(.activationBackward, [p.input, p.outputGradient, p.inputGradient],
                          [p.activation.shaderCode, u(p.count), u(p.input.offset), u(p.outputGradient.offset),
                           u(p.inputGradient.offset)],
                          elementwise(p.count))

        case let .softmax(p):
            return single(.softmax, [p.input, p.output],
                          [u(p.rows), u(p.columns), u(p.input.offset), u(p.output.offset)],
                          perItem(p.rows))

        case let .softmaxCrossEntropy(p):
            return single(.softmaxCrossEntropy, [p.logits, p.labels, p.loss, p.logitsGradient],
                          [u(p.rows), u(p.classes), u(p.logits.offset), u(p.labels.offset), u(p.loss.offset),
                           u(p.logitsGradient.offset), f(p.gradientScale)],
                          perItem(p.rows))

        case let .reduce(p):
            let push = [p.op == .sum ? 0 : 1, u(p.rows), u(p.columns), u(p.input.offset), u(p.output.offset)]
            switch p.axis {
            case .perRow:
                return single(.reduceRows, [p.input, p.output], push, perItem(p.rows))
            case .perColumn:
                return single(.reduceColumns, [p.input, p.output], push, elementwise(p.columns))
            }

        case let .axpy(p):
            return single(.axpy, [p.x, p.y], [u(p.count), u(p.x.offset), u(p.y.offset), f(p.alpha)],
                          elementwise(p.count))

        case let .scale(p):
            return single(.scale, [p.x], [u(p.count), u(p.x.offset), f(p.alpha)], elementwise(p.count))

        case let .conv2dForward(p):
            let s = p.shape
            return single(.conv2dForward, [p.input, p.weight, p.bias ?? p.weight, p.output],
                          s.pushWords + [p.bias == nil ? 0 : 1, u(p.input.offset), u(p.weight.offset),
                                         u(p.bias?.offset ?? 0), u(p.output.offset)],
                          elementwise(s.batch * s.outChannels * s.outHeight * s.outWidth))

        case let .conv2dBackwardData(p):
            let s = p.shape
            return single(.conv2dBackwardData, [p.outputGradient, p.weight, p.inputGradient],
                          s.pushWords + [u(p.outputGradient.offset), u(p.weight.offset), u(p.inputGradient.offset)],
                          elementwise(s.batch * s.inChannels * s.height * s.width))

        case let .conv2dBackwardFilter(p):
            let s = p.shape
            var dispatches = [ShaderDispatch(
                shader: .conv2dBackwardFilter, bindings: [p.input.buffer, p.outputGradient.buffer, p.weightGradient.buffer],
                pushConstants: s.pushWords + [u(p.input.offset), u(p.outputGradient.offset), u(p.weightGradient.offset)],
                groups: perItem(s.outChannels * s.inChannels * s.kernelHeight * s.kernelWidth),
                accesses: touching("input", "outputGradient", "weightGradient"))]
            if let bias = p.biasGradient {
                dispatches.append(ShaderDispatch(
                    shader: .channelSum, bindings: [p.outputGradient.buffer, bias.buffer],
                    pushConstants: [u(s.batch), u(s.outChannels), u(s.outHeight * s.outWidth),
                                    u(p.outputGradient.offset), u(bias.offset)],
                    groups: perItem(s.outChannels),
                    accesses: touching("outputGradient", "biasGradient")))
            }
            return dispatches

        case let .normalizeU8(p):
            var mean = p.mean.map(f)
            var std = p.std.map(f)
            // Unused channels are padded with harmless values; the shader never reads them.
            while mean.count < NormalizeParams.maxChannels { mean.append(f(0)) }
            while std.count < NormalizeParams.maxChannels { std.append(f(1)) }
            return single(.normalizeU8, [p.input, p.output],
                          [u(p.batch), u(p.height), u(p.width), u(p.channels), u(p.input.offset),
                           u(p.output.offset), f(p.scale)] + mean + std,
                          elementwise(p.batch * p.height * p.width * p.channels))

        case let .crop(p):
            if let offsets = p.offsets {
                return single(.cropBatch, [p.input, p.output, offsets],
                              [u(p.batch), u(p.channels), u(p.height), u(p.width), u(p.outHeight), u(p.outWidth),
                               u(p.input.offset), u(p.output.offset), u(offsets.offset), u(p.padding), f(p.padValue)],
                              elementwise(p.batch * p.channels * p.outHeight * p.outWidth))
            }
            return single(.crop, [p.input, p.output],
                          [u(p.batch * p.channels), u(p.height), u(p.width), u(p.outHeight), u(p.outWidth),
                           u(p.top), u(p.left), u(p.input.offset), u(p.output.offset), u(p.padding), f(p.padValue)],
                          elementwise(p.batch * p.channels * p.outHeight * p.outWidth))

        case let .flipHorizontal(p):
            return single(.flipHorizontal, [p.input, p.output],
                          [u(p.batch * p.channels), u(p.height), u(p.width), u(p.input.offset), u(p.output.offset)],
                          elementwise(p.batch * p.channels * p.height * p.width))

        case let .resizeBilinear(p):
            return single(.resizeBilinear, [p.input, p.output],
                          [u(p.batch * p.channels), u(p.height), u(p.width), u(p.outHeight), u(p.outWidth),
                           u(p.input.offset), u(p.output.offset),
                           f(Float(p.height) / Float(p.outHeight)), f(Float(p.width) / Float(p.outWidth))],
                          elementwise(p.batch * p.channels * p.outHeight * p.outWidth))

        case let .maxPool2DForward(p):
            let s = p.shape
            return single(.maxPool2DForward, [p.input, p.output],
                          s.pushWords + [u(p.input.offset), u(p.output.offset)],
                          elementwise(s.batch * s.channels * s.outHeight * s.outWidth))

        case let .maxPool2DBackward(p):
            let s = p.shape
            return single(.maxPool2DBackward, [p.input, p.outputGradient, p.inputGradient],
                          s.pushWords + [u(p.input.offset), u(p.outputGradient.offset), u(p.inputGradient.offset)],
                          elementwise(s.batch * s.channels * s.height * s.width))
        }
    }
}

/// The sgemm shaders, which differ only in output tile (sgemm_tiled.glsl is their common body;
/// both take the same bindings and push constants, and each handles any shape, transpose and
/// offset). Both use under 9 KiB of shared memory, inside the 16 KiB every Vulkan device
/// guarantees, and 256 invocations per workgroup, as the sgemm before them did, so no device
/// limit beyond the group-count fold of `perItem` enters the choice.
package enum SGEMMVariant: String, CaseIterable, Sendable {
    /// 64x64 tiles, 4x4 per invocation (sgemm.comp).
    case tile64
    /// 128x128 tiles, 8x8 per invocation (sgemm_tile128.comp).
    case tile128

    /// Overrides `select` for sgemm kernels lowered in this task (tests run every variant
    /// at small sizes; gpu-bench measures each at every size). Read where the backend lowers
    /// kernels, which is on the submitting thread.
    @TaskLocal package static var forced: SGEMMVariant?

    /// Fewest 128x128 tiles for which the big tile is chosen. The 128x128 tile does 4x the work
    /// per workgroup at twice the FMAs per shared-memory read, so it wins once there are
    /// enough tiles to keep every SM busy; below that SMs idle and 64x64 tiles (4x the
    /// workgroups) finish sooner. An H200 has 132 SMs, each holding one or two 128x128
    /// workgroups (registers decide): 2048^2 gives 256 tiles (every SM busy), 1024^2 only 64
    /// (half the SMs idle, where 64x64 tiles give 256 workgroups), 512^2 only 16 (64x64: 64).
    /// Vulkan does not report SM counts, so the threshold is set for a large current GPU
    /// rather than per device: on a smaller GPU, 64x64 tiles at these sizes still fill it.
    package static let minimumTile128Tiles = 128

    /// The variant for an m x n result (k only lengthens each tile's loop; it does not change
    /// how many tiles there are, so it does not enter the choice).
    package static func select(m: Int, n: Int, k: Int) -> SGEMMVariant {
        // Under 128 rows (or columns) every 128-wide tile computes padding that a 64-wide tile
        // mostly avoids, and such thin results give 64x64 tiles workgroups enough.
        guard m >= 128, n >= 128 else { return .tile64 }
        return tile128.tiles(m: m, n: n) >= minimumTile128Tiles ? .tile128 : .tile64
    }

    var shader: ShaderKernel {
        switch self {
        case .tile64: return .sgemm
        case .tile128: return .sgemmTile128
        }
    }

    /// Output tile edge in elements (square tiles).
    package var tileSize: Int {
        switch self {
        case .tile64: return 64
        case .tile128: return 128
        }
    }

    /// Workgroups for an m x n result: one per tile.
    package func tiles(m: Int, n: Int) -> Int {
        ((m + tileSize - 1) / tileSize) * ((n + tileSize - 1) / tileSize)
    }
}

extension Activation {
    /// The `op` value activation*.comp switch on.
    var shaderCode: UInt32 {
        switch self {
        case .relu: return 0
        case .gelu: return 1
        }
    }
}

extension Conv2DShape {
    /// The 13 shape words every conv2d*.comp `Params` block starts with.
    var pushWords: [UInt32] {
        [batch, inChannels, height, width, outChannels, kernelHeight, kernelWidth, outHeight, outWidth,
         strideY, strideX, padY, padX].map { UInt32(truncatingIfNeeded: $0) }
    }
}

extension MaxPool2DShape {
    /// The 5 shape words both maxpool2d*.comp `Params` blocks start with.
    var pushWords: [UInt32] {
        [batch * channels, height, width, outHeight, outWidth].map { UInt32(truncatingIfNeeded: $0) }
    }
}
