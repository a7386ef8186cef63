/// The geometry of a 2-D convolution over NCHW tensors with KCRS filters (PyTorch layout):
/// input N x C x H x W, weight K x C x R x S, output N x K x P x Q with
/// P = (H + 2 padY - R) / strideY + 1 and Q likewise.
public struct Conv2DShape: Hashable, Sendable {
    public var batch: Int
    public var inChannels: Int
    public var height: Int
    public var width: Int
    public var outChannels: Int
    public var kernelHeight: Int
    public var kernelWidth: Int
    public var strideY: Int
    public var strideX: Int
    public var padY: Int
    public var padX: Int

    public init(batch: Int, inChannels: Int, height: Int, width: Int, outChannels: Int,
                kernelHeight: Int, kernelWidth: Int, strideY: Int = 1, strideX: Int = 1,
                padY: Int = 0, padX: Int = 0) {
        self.batch = batch
        self.inChannels = inChannels
        self.height = height
        self.width = width
        self.outChannels = outChannels
        self.kernelHeight = kernelHeight
        self.kernelWidth = kernelWidth
        self.strideY = strideY
        self.strideX = strideX
        self.padY = padY
        self.padX = padX
    }

    /// P; 0 when the filter does not fit the padded input (validation rejects that).
    public var outHeight: Int {
        Self.outputExtent(size: height, kernel: kernelHeight, stride: strideY, pad: padY)
    }

    /// Q; see `outHeight`.
    public var outWidth: Int {
        Self.outputExtent(size: width, kernel: kernelWidth, stride: strideX, pad: padX)
    }

    // Checked arithmetic: shapes come from guests, and an overflow here must become a
    // validation error, not a trap.
    static func outputExtent(size: Int, kernel: Int, stride: Int, pad: Int) -> Int {
        guard stride > 0, size >= 0, kernel > 0, pad >= 0 else { return 0 }
        let (twoPad, overflowA) = pad.multipliedReportingOverflow(by: 2)
        let (padded, overflowB) = size.addingReportingOverflow(twoPad)
        guard !overflowA, !overflowB, padded >= kernel else { return 0 }
        return (padded - kernel) / stride + 1
    }
}

/// output = conv2d(input, weight) + bias (bias optional, one value per output channel).
public struct Conv2DForwardParams: Hashable, Sendable {
    public var shape: Conv2DShape
    public var input: BufferRange
    public var weight: BufferRange
    public var bias: BufferRange?
    public var output: BufferRange

    public init(shape: Conv2DShape, input: BufferRange, weight: BufferRange, bias: BufferRange? = nil,
                output: BufferRange) {
        self.shape = shape
        self.input = input
        self.weight = weight
        self.bias = bias
        self.output = output
    }
}

/// inputGradient = dL/dinput given outputGradient = dL/doutput (overwrites inputGradient).
public struct Conv2DBackwardDataParams: Hashable, Sendable {
    public var shape: Conv2DShape
    public var outputGradient: BufferRange
    public var weight: BufferRange
    public var inputGradient: BufferRange

    public init(shape: Conv2DShape, outputGradient: BufferRange, weight: BufferRange,
                inputGradient: BufferRange) {
        self.shape = shape
        self.outputGradient = outputGradient
        self.weight = weight
        self.inputGradient = inputGradient
    }
}

/// weightGradient = dL/dweight and, when given, biasGradient = dL/dbias (both overwritten).
public struct Conv2DBackwardFilterParams: Hashable, Sendable {
    public var shape: Conv2DShape
    public var input: BufferRange
    public var outputGradient: BufferRange
    public var weightGradient: BufferRange
    public var biasGradient: BufferRange?

    public init(shape: Conv2DShape, input: BufferRange, outputGradient: BufferRange,
                weightGradient: BufferRange, biasGradient: BufferRange? = nil) {
        self.shape = shape
        self.input = input
        self.outputGradient = outputGradient
        self.weightGradient = weightGradient
        self.biasGradient = biasGradient
    }
}
