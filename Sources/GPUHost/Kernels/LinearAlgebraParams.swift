/// C = alpha * op(A) * op(B) + beta * C, all row-major and densely packed. op(A) is m x k:
/// A is stored m x k, or k x m when `transposeA`. op(B) is k x n: B is stored k x n, or
/// n x k when `transposeB`. With beta == 0, C's prior contents are ignored (BLAS rule), so
/// an uninitialised C cannot leak NaNs into the result.
public struct SGEMMParams: Hashable, Sendable {
    public var m: Int
    public var n: Int
    public var k: Int
    public var transposeA: Bool
    public var transposeB: Bool
    public var alpha: Float
    public var beta: Float
    public var a: BufferRange
    public var b: BufferRange
    public var c: BufferRange

    public init(m: Int, n: Int, k: Int, transposeA: Bool = false, transposeB: Bool = false,
                alpha: Float = 1, beta: Float = 0, a: BufferRange, b: BufferRange, c: BufferRange) {
        self.m = m
        self.n = n
        self.k = k
        self.transposeA = transposeA
        self.transposeB = transposeB
        self.alpha = alpha
        self.beta = beta
        self.a = a
        self.b = b
        self.c = c
    }
}

/// data[o][c][i] += bias[c] over an (outer, channels, inner) view of `data`: a dense layer's
/// rows x features is (rows, features, 1), a convolution's N x K x P x Q is (N, K, P*Q).
public struct BiasAddParams: Hashable, Sendable {
    public var outer: Int
    public var channels: Int
    public var inner: Int
    public var data: BufferRange
    public var bias: BufferRange

    public init(outer: Int, channels: Int, inner: Int = 1, data: BufferRange, bias: BufferRange) {
        self.outer = outer
        self.channels = channels
        self.inner = inner
        self.data = data
        self.bias = bias
    }
}

public enum ReductionOp: String, Hashable, Sendable, CaseIterable {
    case sum
    case max
}

public enum ReductionAxis: String, Hashable, Sendable, CaseIterable {
    /// One result per row, reducing across its columns (row sums, row max for argmax/softmax).
    case perRow
    /// One result per column, reducing down the rows (the bias gradient of a dense layer).
    case perColumn
}

/// Reduces a rows x columns matrix along one axis.
public struct ReduceParams: Hashable, Sendable {
    public var op: ReductionOp
    public var axis: ReductionAxis
    public var rows: Int
    public var columns: Int
    public var input: BufferRange
    public var output: BufferRange

    public init(op: ReductionOp, axis: ReductionAxis = .perRow, rows: Int, columns: Int,
                input: BufferRange, output: BufferRange) {
        self.op = op
        self.axis = axis
        self.rows = rows
        self.columns = columns
        self.input = input
        self.output = output
    }
}

/// y = alpha * x + y. An SGD step is `AxpyParams(count:, alpha: -learningRate, x: grad, y: weights)`.
public struct AxpyParams: Hashable, Sendable {
    public var count: Int
    public var alpha: Float
    public var x: BufferRange
    public var y: BufferRange

    public init(count: Int, alpha: Float, x: BufferRange, y: BufferRange) {
        self.count = count
        self.alpha = alpha
        self.x = x
        self.y = y
    }
}

/// x = alpha * x, in place.
public struct ScaleParams: Hashable, Sendable {
    public var count: Int
    public var alpha: Float
    public var x: BufferRange

    public init(count: Int, alpha: Float, x: BufferRange) {
        self.count = count
        self.alpha = alpha
        self.x = x
    }
}
