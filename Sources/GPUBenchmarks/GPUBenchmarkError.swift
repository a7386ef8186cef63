/// Why a GPU benchmark could not run or finish: one line for the operator.
public struct GPUBenchmarkError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
