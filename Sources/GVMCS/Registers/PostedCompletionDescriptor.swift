/// The 64-byte posted-completion descriptor in host memory, modelled on VMX's posted-interrupt
/// descriptor: bytes 0-31 a bitmap of pending completion vectors (256), byte 32 bit 0 the
/// outstanding-notification bit (ON), bytes 40-47 the last fence value completed, the rest
/// reserved. The guest-side driver (via the device) clears ON and the vectors it has handled.
///
/// Posting sets the vector's bit and the fence value, then signals the notification vector
/// only if ON was clear, so a burst of completions costs one irqfd signal, as with VMX.
public struct PostedCompletionDescriptor {
    public static let size: UInt64 = 64
    public static let notificationOffset: UInt64 = 32
    public static let fenceOffset: UInt64 = 40

    public let memory: any GPUMemory
    public let address: UInt64

    public init(memory: any GPUMemory, address: UInt64) {
        self.memory = memory
        self.address = address
    }

    /// Posts a completion; returns true when a notification must be sent.
    public func post(vector: UInt8, fence: UInt64) throws(GPUMemoryFault) -> Bool {
        let word = address + UInt64(vector / 64) * 8
        try memory.store64(word, try memory.load64(word) | 1 << UInt64(vector % 64))
        try memory.store64(address + Self.fenceOffset, fence)
        let on = try memory.load64(address + Self.notificationOffset)
        guard on & 1 == 0 else { return false }
        try memory.store64(address + Self.notificationOffset, on | 1)
        return true
    }

    public func isPending(vector: UInt8) throws(GPUMemoryFault) -> Bool {
        try memory.load64(address + UInt64(vector / 64) * 8) & (1 << UInt64(vector % 64)) != 0
    }

    public func outstandingNotification() throws(GPUMemoryFault) -> Bool {
        try memory.load64(address + Self.notificationOffset) & 1 != 0
    }

    public func lastFence() throws(GPUMemoryFault) -> UInt64 {
        try memory.load64(address + Self.fenceOffset)
    }
}
