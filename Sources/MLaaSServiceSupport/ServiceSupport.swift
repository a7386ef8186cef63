import CMLaaS

// What every service module written in Swift needs on the C ABI's side (malv_mlaas.h): its
// descriptor's fixed header, the host table's version check, and error lines written into the
// host's buffer. Linked into each module (libpreprocess.so, libprefetch.so), so a module still
// depends on nothing the host has to provide.

/// A zeroed descriptor with this ABI's magic, version and size and the given identity; the
/// module fills in its entry points. Allocated once and never freed: the host reads it for as
/// long as the module is mapped.
public func makeServiceDescriptor(kind: malv_mlaas_kind, name: StaticString, version: StaticString,
                                  description: StaticString) -> UnsafeMutablePointer<malv_mlaas_service> {
    let d = UnsafeMutablePointer<malv_mlaas_service>.allocate(capacity: 1)
    d.initialize(to: malv_mlaas_service())
    d.pointee.magic = UInt32(MALV_MLAAS_MAGIC)
    d.pointee.abi_version = UInt32(MALV_MLAAS_ABI_VERSION)
    d.pointee.struct_size = UInt32(MemoryLayout<malv_mlaas_service>.size)
    d.pointee.kind = UInt32(kind.rawValue)
    d.pointee.name = cString(name)
    d.pointee.version = cString(version)
    d.pointee.description = cString(description)
    return d
}

/// Whether the host's table is the one this module was built against.
public func hostSpeaksThisABI(_ host: UnsafePointer<malv_mlaas_host>) -> Bool {
    host.pointee.abi_version == UInt32(MALV_MLAAS_ABI_VERSION)
        && host.pointee.struct_size == UInt32(MemoryLayout<malv_mlaas_host>.size)
}

/// Writes `message` NUL-terminated into the host's error buffer, cut to fit (at most 4 KiB).
public func writeError(_ message: String, _ buffer: UnsafeMutablePointer<CChar>?, _ capacity: UInt64) {
    guard let buffer, capacity > 0 else { return }
    let bytes = Array(message.utf8.prefix(Int(min(capacity, 4096)) - 1))
    for (index, byte) in bytes.enumerated() { buffer[index] = CChar(bitPattern: byte) }
    buffer[bytes.count] = 0
}

private func cString(_ literal: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(literal.utf8Start).assumingMemoryBound(to: CChar.self)
}

/// One line in the host's log (the host prefixes the service's name).
public func hostLog(_ host: UnsafePointer<malv_mlaas_host>, _ level: malv_mlaas_log_level, _ message: String) {
    guard let log = host.pointee.log else { return }
    message.withCString { log(host.pointee.host_context, Int32(level.rawValue), $0) }
}

/// The host's `block` capability, if it offers one of a version and size this module knows.
public func blockCapability(of host: UnsafePointer<malv_mlaas_host>) -> UnsafePointer<malv_mlaas_block>? {
    guard let block = host.pointee.block, block.pointee.version >= 1,
          block.pointee.struct_size >= UInt32(MemoryLayout<malv_mlaas_block>.size) else { return nil }
    return block
}

/// The host's `scheduler` capability, if it offers one of a version and size this module knows.
public func schedulerCapability(of host: UnsafePointer<malv_mlaas_host>) -> UnsafePointer<malv_mlaas_scheduler>? {
    guard let scheduler = host.pointee.scheduler, scheduler.pointee.version >= 1,
          scheduler.pointee.struct_size >= UInt32(MemoryLayout<malv_mlaas_scheduler>.size) else { return nil }
    return scheduler
}
