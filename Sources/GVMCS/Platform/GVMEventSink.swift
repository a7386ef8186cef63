/// Where the unit's signals to the outside go. The device slice backs both with irqfds: the
/// injected event with the guest's MSI-X vector, the posted-completion notification with the
/// vector in `postedCompletionNotificationVector`. Neither costs a userspace exit.
public protocol GVMEventSink: AnyObject {
    /// An entry delivered `event` (from the entry event-injection field) to the guest.
    func deliver(_ event: GVMEventInjection)
    /// A completion was posted to a descriptor whose outstanding-notification bit was clear.
    func notifyPostedCompletion(vector: UInt16)
}
