extension GVMExit {
    /// The exit-reason field's value: the basic reason, with bit 31 for an entry failure.
    public var rawReason: UInt32 {
        let basic = UInt32(reason.rawValue)
        if case .entryFailure = self { return basic | GVMExitReason.entryFailureBit }
        return basic
    }

    /// The exit-qualification field's value (see each reason in `GVMExitReason`).
    public var qualification: UInt64 {
        switch self {
        case .doorbell(let tail): UInt64(tail)
        case .mmioAccess(let q, _): q.rawValue
        case .geptViolation(let q, _, _): q.rawValue
        case .geptMisconfiguration, .preemptionTimerExpired, .idle: 0
        case .completion(let fence, _): fence
        case .invalidCommand(let cause): UInt64(cause.rawValue)
        case .guestPageFault(let code, _): code.rawValue
        case .entryFailure(let check): UInt64(check.rawValue)
        }
    }

    /// The guest-physical-address field's value, for exits that have one.
    var guestPhysicalAddress: UInt64? {
        switch self {
        case .geptViolation(_, let gpa, _), .geptMisconfiguration(let gpa, _): gpa
        default: nil
        }
    }

    /// The guest-GPU-address field's value, for exits that have one.
    var guestGPUAddress: UInt64? {
        switch self {
        case .geptViolation(_, _, let gva), .geptMisconfiguration(_, let gva),
             .guestPageFault(_, let gva): gva
        default: nil
        }
    }

    var mmioData: UInt64? {
        if case .mmioAccess(_, let data) = self { return data }
        return nil
    }

    /// The exit-completion-information field: valid | type 0 (completion) | vector.
    var completionInformation: UInt32 {
        if case .completion(_, let vector?) = self {
            return GVMEventInjection(vector: vector, type: .completion).rawValue
        }
        return 0
    }
}
