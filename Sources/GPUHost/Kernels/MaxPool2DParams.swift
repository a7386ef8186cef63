/// The geometry of a 2x2, stride-2 max pool over an NCHW f32 tensor: input N x C x H x W,
/// output N x C x (H / 2) x (W / 2), rounding down (PyTorch's `MaxPool2d(2)`, ceil_mode off):
/// with an odd H or W the last row or column belongs to no window and is not read forward.
///
/// Which element is a window's maximum, exactly (forward and backward agree on it): the
/// window's four elements are visited in row-major order, (0,0), (0,1), (1,0), (1,1), and
/// a later one replaces the current maximum only when it is strictly greater (IEEE `>`).
/// So a tie goes to the first of the tied elements in row-major order, and a NaN wins only
/// in the window's first position (no comparison with a NaN is true). The CPU reference
/// and both shaders implement this one rule, which is what lets the backward pass recompute
/// the argmax from the forward's input instead of storing indices.
public struct MaxPool2DShape: Hashable, Sendable {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int

    public init(batch: Int, channels: Int, height: Int, width: Int) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
    }

    /// The window and its stride: fixed, the only pool the CNN job needs.
    public static let window = 2

    public var outHeight: Int { height / Self.window }
    public var outWidth: Int { width / Self.window }
}

/// output[n][c][y][x] = max of input[n][c][2y ... 2y+1][2x ... 2x+1] (MaxPool2DShape's rule).
public struct MaxPool2DForwardParams: Hashable, Sendable {
    public var shape: MaxPool2DShape
    public var input: BufferRange
    public var output: BufferRange

    public init(shape: MaxPool2DShape, input: BufferRange, output: BufferRange) {
        self.shape = shape
        self.input = input
        self.output = output
    }
}

/// inputGradient = dL/dinput given outputGradient = dL/doutput: each output's gradient goes to
/// its window's argmax (MaxPool2DShape's rule, recomputed from `input`, the forward's input);
/// every other element of inputGradient, including rows and columns outside every window, is
/// written 0 (overwrites inputGradient).
public struct MaxPool2DBackwardParams: Hashable, Sendable {
    public var shape: MaxPool2DShape
    public var input: BufferRange
    public var outputGradient: BufferRange
    public var inputGradient: BufferRange

    public init(shape: MaxPool2DShape, input: BufferRange, outputGradient: BufferRange, inputGradient: BufferRange) {
        self.shape = shape
        self.input = input
        self.outputGradient = outputGradient
        self.inputGradient = inputGradient
    }
}
