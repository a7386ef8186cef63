/// Checked arithmetic over guest-supplied shapes: every value is range-checked and every
/// product overflow-checked, so validation reports a typed error where plain `*` would trap.
struct ShapeChecker {
    let kernel: String

    func positive(_ name: String, _ value: Int) throws(KernelValidationError) -> Int {
        if value == 0 { throw .zeroDimension(kernel: kernel, dimension: name) }
        if value < 0 { throw .negativeValue(kernel: kernel, name: name, value: value) }
        if value > Kernel.maxElements {
            throw .dimensionTooLarge(kernel: kernel, dimension: name, value: value, limit: Kernel.maxElements)
        }
        return value
    }

    func nonNegative(_ name: String, _ value: Int) throws(KernelValidationError) -> Int {
        if value < 0 { throw .negativeValue(kernel: kernel, name: name, value: value) }
        if value > Kernel.maxElements {
            throw .dimensionTooLarge(kernel: kernel, dimension: name, value: value, limit: Kernel.maxElements)
        }
        return value
    }

    /// Product of already-checked dimensions, itself bounded by `Kernel.maxElements`.
    func product(_ name: String, _ factors: Int...) throws(KernelValidationError) -> Int {
        var result = 1
        for factor in factors {
            let (next, overflow) = result.multipliedReportingOverflow(by: factor)
            if overflow || next > Kernel.maxElements {
                throw .dimensionTooLarge(kernel: kernel, dimension: name,
                                         value: overflow ? Int.max : next, limit: Kernel.maxElements)
            }
            result = next
        }
        return result
    }

    func finite(_ name: String, _ value: Float) throws(KernelValidationError) {
        if !value.isFinite {
            throw .invalidParameter(kernel: kernel, name: name, reason: "is not finite (\(value))")
        }
    }

    func invalid(_ name: String, _ reason: String) -> KernelValidationError {
        .invalidParameter(kernel: kernel, name: name, reason: reason)
    }
}
