/// Decides where a batch needs a pipeline barrier: before a dispatch that reads what an
/// earlier dispatch since the last barrier wrote (RAW), writes what one wrote (WAW), or
/// writes what one read (WAR). Independent dispatches run back to back and may overlap on
/// the device. Ranges are compared at byte granularity, so disjoint slices of one buffer
/// do not serialise each other.
struct BarrierPlanner {
    private var reads: [BufferID: [Range<Int>]] = [:]
    private var writes: [BufferID: [Range<Int>]] = [:]

    /// Records a dispatch's accesses; returns true when a barrier must be recorded before it.
    mutating func admit(_ accesses: [KernelOperand]) -> Bool {
        let hazard = accesses.contains { access in
            let span = access.byteRange
            let buffer = access.range.buffer
            if access.access.reads, overlaps(writes[buffer], span) { return true }
            if access.access.writes, overlaps(writes[buffer], span) || overlaps(reads[buffer], span) { return true }
            return false
        }
        if hazard {
            reads.removeAll(keepingCapacity: true)
            writes.removeAll(keepingCapacity: true)
        }
        for access in accesses {
            if access.access.reads { reads[access.range.buffer, default: []].append(access.byteRange) }
            if access.access.writes { writes[access.range.buffer, default: []].append(access.byteRange) }
        }
        return hazard
    }

    private func overlaps(_ spans: [Range<Int>]?, _ span: Range<Int>) -> Bool {
        spans?.contains { $0.overlaps(span) } ?? false
    }
}
