/// Host memory a batch copies from or into, named by address and length, without ownership.
///
/// Lifetime contract: the memory must stay mapped, and must not be written by anyone else,
/// from the moment the batch is handed over (`ComputeBackend.submit`, `GPUScheduler.submit`)
/// until the batch is retired: `ComputeBackend.wait` has returned, or the scheduler's ticket
/// has an outcome (success, failure or cancellation). Uploads are read at some point in
/// between (a backend may read them at submit, the scheduler hands batches to its backend
/// later), downloads are written at some point in between. Guest RAM fits this contract: it
/// is mapped for the VM's life, and a vGPU answers a submission only after its ticket is done.
///
/// `@unchecked Sendable` because it is a bare pointer: the contract above is what makes
/// handing it to the scheduler thread sound, and the type cannot check it.
public struct UnsafeHostBytes: Hashable, @unchecked Sendable, CustomStringConvertible {
    public let baseAddress: UnsafeMutableRawPointer?
    public let count: Int

    /// Host memory that a download may write and an upload reads (a backend never writes
    /// through an upload's bytes).
    public init(_ bytes: UnsafeMutableRawBufferPointer) {
        baseAddress = bytes.baseAddress
        count = bytes.baseAddress == nil ? 0 : bytes.count
    }

    public var description: String {
        "host[\(baseAddress.map { "0x" + String(UInt(bitPattern: $0), radix: 16) } ?? "nil"), +\(count)]"
    }
}

/// One copy between host memory and a buffer that travels inside a `CommandBatch`, so the
/// copy is ordered with the batch's kernels on the device and costs no submission or wait
/// of its own. The copy covers bytes `[byteOffset, byteOffset + host.count)` of `buffer`.
public struct HostTransfer: Hashable, Sendable, CustomStringConvertible {
    public enum Direction: String, Hashable, Sendable {
        /// Host → buffer, before the batch's first kernel.
        case upload
        /// Buffer → host, after the batch's last kernel.
        case download
    }

    public var buffer: BufferID
    public var byteOffset: Int
    public var host: UnsafeHostBytes

    public init(buffer: BufferID, byteOffset: Int, host: UnsafeHostBytes) {
        self.buffer = buffer
        self.byteOffset = byteOffset
        self.host = host
    }

    public init(buffer: BufferID, byteOffset: Int, host: UnsafeMutableRawBufferPointer) {
        self.init(buffer: buffer, byteOffset: byteOffset, host: UnsafeHostBytes(host))
    }

    public var byteCount: Int { host.count }

    public var description: String { "\(buffer)[\(byteOffset), +\(byteCount)] ↔ \(host)" }
}

/// Why a batch's upload or download was refused. Every check is made before anything of
/// the batch runs.
public enum HostTransferError: Error, Hashable, Sendable, CustomStringConvertible {
    /// The id is not a buffer of the caller (for a scheduler client: not one of its own; a
    /// foreign id is reported exactly like one that does not exist).
    case unknownBuffer(BufferID)
    case outOfBounds(BufferID, byteOffset: Int, byteCount: Int, capacity: Int)
    /// Two uploads write the same bytes of a buffer: a device copies them in no defined
    /// order, so the result would depend on the backend.
    case overlapsUpload(BufferID, otherIndex: Int)

    public var description: String {
        switch self {
        case let .unknownBuffer(id):
            return "names unknown \(id)"
        case let .outOfBounds(id, byteOffset, byteCount, capacity):
            return "\(byteCount) bytes at \(byteOffset) lie outside \(id) (\(capacity) bytes)"
        case let .overlapsUpload(id, otherIndex):
            return "overlaps upload \(otherIndex) in \(id)"
        }
    }
}

extension CommandBatch {
    /// Whether the batch moves bytes between host memory and its buffers.
    public var hasHostTransfers: Bool { !uploads.isEmpty || !downloads.isEmpty }

    /// Checks every upload and download against `capacity` (a buffer's size in bytes, or nil
    /// for an id the caller does not own), without overflow, and that no two uploads write
    /// the same bytes.
    public func validateTransfers(capacity: (BufferID) -> Int?) throws(GPUError) {
        for (direction, transfers) in [(HostTransfer.Direction.upload, uploads), (.download, downloads)] {
            for (index, transfer) in transfers.enumerated() {
                guard let bytes = capacity(transfer.buffer) else {
                    throw .invalidTransfer(direction, index: index, .unknownBuffer(transfer.buffer))
                }
                let (end, overflow) = transfer.byteOffset.addingReportingOverflow(transfer.byteCount)
                guard transfer.byteOffset >= 0, transfer.byteCount >= 0, !overflow, end <= bytes else {
                    throw .invalidTransfer(direction, index: index,
                                           .outOfBounds(transfer.buffer, byteOffset: transfer.byteOffset,
                                                        byteCount: transfer.byteCount, capacity: bytes))
                }
            }
        }
        guard uploads.count > 1 else { return }
        // Bounds hold, so the ends cannot overflow. Sorted by buffer then start, an overlap
        // can only be with the neighbour.
        let order = uploads.indices.filter { uploads[$0].byteCount > 0 }.sorted { lhs, rhs in
            let (a, b) = (uploads[lhs], uploads[rhs])
            return a.buffer.rawValue != b.buffer.rawValue ? a.buffer.rawValue < b.buffer.rawValue
                : a.byteOffset < b.byteOffset
        }
        for (previous, next) in zip(order, order.dropFirst()) {
            let (a, b) = (uploads[previous], uploads[next])
            if a.buffer == b.buffer, b.byteOffset < a.byteOffset + a.byteCount {
                throw .invalidTransfer(.upload, index: max(previous, next), .overlapsUpload(a.buffer, otherIndex: min(previous, next)))
            }
        }
    }
}
