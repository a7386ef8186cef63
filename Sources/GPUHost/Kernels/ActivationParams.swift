public enum Activation: String, Hashable, Sendable, CaseIterable {
    case relu
    /// GELU with the tanh approximation (PyTorch `approximate="tanh"`):
    /// 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    case gelu
}

/// output = f(input), elementwise. In place (input == output) is allowed.
public struct ActivationParams: Hashable, Sendable {
    public var activation: Activation
    public var count: Int
    public var input: BufferRange
    public var output: BufferRange

    public init(activation: Activation, count: Int, input: BufferRange, output: BufferRange) {
        self.activation = activation
        self.count = count
        self.input = input
        self.output = output
    }
}

/// inputGradient = f'(input) * outputGradient, elementwise; `input` is the pre-activation
/// value saved from the forward pass. inputGradient may share storage with outputGradient.
public struct ActivationBackwardParams: Hashable, Sendable {
    public var activation: Activation
    public var count: Int
    public var input: BufferRange
    public var outputGradient: BufferRange
    public var inputGradient: BufferRange

    public init(activation: Activation, count: Int, input: BufferRange,
                outputGradient: BufferRange, inputGradient: BufferRange) {
        self.activation = activation
        self.count = count
        self.input = input
        self.outputGradient = outputGradient
        self.inputGradient = inputGradient
    }
}

/// Row-wise softmax of a rows x columns matrix.
public struct SoftmaxParams: Hashable, Sendable {
    public var rows: Int
    public var columns: Int
    public var input: BufferRange
    public var output: BufferRange

    public init(rows: Int, columns: Int, input: BufferRange, output: BufferRange) {
        self.rows = rows
        self.columns = columns
        self.input = input
        self.output = output
    }
}

/// Softmax cross-entropy of rows x classes logits against one `uint32` label per row:
/// loss[r] = logsumexp(logits[r]) - logits[r][label[r]] and
/// logitsGradient[r][j] = (softmax(logits[r])[j] - [j == label[r]]) * gradientScale.
/// The default scale 1/rows makes the gradient that of the mean loss. A label outside
/// 0..<classes is data, not shape, so it is not rejected up front: its row gets a NaN loss
/// and a gradient without the one-hot term, and nothing is read out of bounds.
public struct SoftmaxCrossEntropyParams: Hashable, Sendable {
    public var rows: Int
    public var classes: Int
    public var logits: BufferRange
    public var labels: BufferRange
    public var loss: BufferRange
    public var logitsGradient: BufferRange
    public var gradientScale: Float

    public init(rows: Int, classes: Int, logits: BufferRange, labels: BufferRange,
                loss: BufferRange, logitsGradient: BufferRange, gradientScale: Float? = nil) {
        self.rows = rows
        self.classes = classes
        self.logits = logits
        self.labels = labels
        self.loss = loss
        self.logitsGradient = logitsGradient
        self.gradientScale = gradientScale ?? (rows > 0 ? 1 / Float(rows) : 0)
    }
}
