extension Kernel {
    /// Checks shapes, that every range lies inside its buffer, and that no written range
    /// aliases another operand in a way the kernel cannot compute correctly. `capacity`
    /// answers a buffer's size in bytes, or nil for an id the caller does not own.
    /// Returns the operands for barrier planning.
    public func validate(capacity: (BufferID) -> Int?) throws(KernelValidationError) -> [KernelOperand] {
        let operands = try operands()
        for operand in operands {
            let range = operand.range
            if range.offset < 0 {
                throw .negativeValue(kernel: name, name: "\(operand.name).offset", value: range.offset)
            }
            if range.count != operand.expectedCount {
                throw .rangeCountMismatch(kernel: name, operand: operand.name,
                                          expected: operand.expectedCount, actual: range.count)
            }
            guard let bytes = capacity(range.buffer) else {
                throw .unknownBuffer(kernel: name, operand: operand.name, buffer: range.buffer)
            }
            let (endElement, overflowA) = range.offset.addingReportingOverflow(range.count)
            let (endByte, overflowB) = endElement.multipliedReportingOverflow(by: operand.element.byteSize)
            if overflowA || overflowB || endByte > bytes {
                throw .rangeOutOfBounds(kernel: name, operand: operand.name, range: range,
                                        endByte: (overflowA || overflowB) ? Int.max : endByte, capacity: bytes)
            }
        }
        for i in operands.indices {
            for j in operands.indices where j > i {
                let a = operands[i]
                let b = operands[j]
                guard a.access.writes || b.access.writes, a.range.buffer == b.range.buffer,
                      a.byteRange.overlaps(b.byteRange) else { continue }
                let inPlace = a.pointwise && b.pointwise && a.range == b.range && a.element == b.element
                if !inPlace {
                    throw .overlappingOperands(kernel: name, first: a.name, second: b.name)
                }
            }
        }
        return operands
    }
}

extension CommandBatch {
    /// Validates every upload and download (`validateTransfers`), then every kernel; the
    /// first failure is reported with its position in the batch. Returns each kernel's
    /// operands, in batch order.
    public func validate(capacity: (BufferID) -> Int?) throws(GPUError) -> [[KernelOperand]] {
        try validateTransfers(capacity: capacity)
        var result: [[KernelOperand]] = []
        result.reserveCapacity(kernels.count)
        for (index, kernel) in kernels.enumerated() {
            do throws(KernelValidationError) {
                result.append(try kernel.validate(capacity: capacity))
            } catch {
                throw .invalidKernel(index: index, error)
            }
        }
        return result
    }
}
