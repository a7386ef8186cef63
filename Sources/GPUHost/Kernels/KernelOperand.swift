/// One buffer range a kernel touches, with what the kernel does to it. Backends use this list
/// to check bounds and aliasing before dispatch and to decide where a batch needs barriers.
public struct KernelOperand: Hashable, Sendable {
    public enum Access: Hashable, Sendable {
        case read
        case write
        case readWrite

        public var reads: Bool { self != .write }
        public var writes: Bool { self != .read }
    }

    public var name: String
    public var range: BufferRange
    public var element: ElementType
    public var access: Access
    /// The element count the shape requires; the range must match it exactly.
    public var expectedCount: Int
    /// True when element i of this operand is only touched by the work item that produces
    /// element i of the output. Only two pointwise operands over the identical range may
    /// alias (an in-place update); any other overlap involving a write is rejected.
    public var pointwise: Bool

    public init(name: String, range: BufferRange, element: ElementType = .float32, access: Access,
                expectedCount: Int, pointwise: Bool) {
        self.name = name
        self.range = range
        self.element = element
        self.access = access
        self.expectedCount = expectedCount
        self.pointwise = pointwise
    }

    /// Byte span inside the buffer. Only meaningful after validation has bounded it.
    public var byteRange: Range<Int> {
        let start = range.offset * element.byteSize
        return start ..< start + range.count * element.byteSize
    }
}
