import CFDPassing
import CKVM
import Foundation
import FuzzSupport
@testable import GPUDaemon
import GPUHost
import Hypervisor
import VGPUCore

// vgpu-user messages: a real GPU daemon (VGPUServer on the CPU reference backend) and one
// hostile VM process per input, connecting over the daemon's socket and sending what the
// input describes, descriptors included; the daemon's replies are read after each message and
// the doorbells rung, so a session's handling (hello's shared-memory checks, activation, the
// device serving rings in that memory) happens while this input is the current one.
// Input: [image length u16][image: the bytes every memfd handed over starts with (guest RAM
// from address 0)] then messages: [length u16][JSON][descriptor count u8][one byte each:
// bits 0-2 the kind (0 sealed memfd, 1 eventfd, 2 unsealed memfd, 3 /dev/null, 4 a pipe,
// 5 a socket, else eventfd), bits 3-7 the memfd's size in 64 KiB units - 1].

let socketPath = NSTemporaryDirectory() + "malvvm-fuzz-gpud-\(getpid()).sock"
let scheduler = try! GPUScheduler(backend: CPUBackend())
let server = try! VGPUServer(scheduler: scheduler, socketPath: socketPath)
atexit { unlink(socketPath) }

func message(_ request: VGPUUser.Request, descriptors: [UInt8]) -> [UInt8] {
    let json = try! JSONEncoder().encode(request)
    var w = ByteImage()
    w.append(UInt16(json.count)); w.append(Array(json)); w.append(UInt8(descriptors.count)); w.append(descriptors)
    return w.bytes
}

func seeds() -> [[UInt8]] {
    let ring = PackedRing(size: 16)
    var image = ByteImage()
    var request = ByteImage()                    // GET_DISPLAY_INFO on the control queue
    request.append(UInt32(0x0100)); request.append(UInt32(0)); request.append(UInt64(0)); request.append(UInt64(0))
    image.put(request.bytes, at: 0x1000)
    ring.descriptor(0, address: 0x1000, length: 24, flags: PackedRing.next, next: 1, into: &image)
    ring.descriptor(1, address: 0x2000, length: 0x100, flags: PackedRing.write, into: &image)
    ring.offer([0], into: &image)
    var prefix = ByteImage()
    prefix.append(UInt16(image.bytes.count)); prefix.append(image.bytes)

    let hello = VGPUUser.Request.hello(VGPUUser.Hello(version: VGPUUser.version, vm: "vm1", vgpu: "vgpu0", profile: "1g",
                                                      regions: [VGPUUser.MemoryRegion(start: 0, size: 64 << 10, fileOffset: 0)]))
    let queue = VGPUUser.Queue(size: 16, descriptorTable: ring.descriptors, availableRing: ring.available, usedRing: ring.used)
    let activate = VGPUUser.Request.activate(VGPUUser.Activation(features: VirtioFeature.version1, queues: [queue, nil],
                                                                 interrupts: [true, false]))
    let session = message(hello, descriptors: [0]) + message(activate, descriptors: [1, 1, 1])
        + message(.writeConfiguration(offset: 8, bytes: [1, 0, 0, 0]), descriptors: [])
        + message(.statistics, descriptors: []) + message(.reset, descriptors: [])
    return [prefix.bytes + session, prefix.bytes + message(hello, descriptors: [0]) + message(.statistics, descriptors: []),
            prefix.bytes + message(hello, descriptors: [2]), prefix.bytes + message(activate, descriptors: [1, 1, 1])]
}

/// A descriptor of the kind `spec` names, holding `image` if it is a memfd; and what to close.
func descriptor(_ spec: UInt8, image: [UInt8]) -> Int32? {
    switch spec & 7 {
    case 0, 2:
        let fd = ckvm_memfd_create("fuzz-guest", CKVM_MFD_CLOEXEC | CKVM_MFD_ALLOW_SEALING)
        guard fd >= 0 else { return nil }
        let size = (Int(spec >> 3) + 1) << 16
        _ = ftruncate(fd, off_t(size))
        _ = image.prefix(size).withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        if spec & 7 == 0 { _ = ckvm_memfd_seal_size(fd) }
        return fd
    case 3: return open("/dev/null", O_RDWR | O_CLOEXEC)
    case 4:
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        close(fds[0])
        return fds[1]
    case 5:
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &fds) == 0 else { return nil }
        close(fds[1])
        return fds[0]
    default: return ckvm_eventfd(0)
    }
}

Fuzz.main(seeds: seeds) { data in
    var input = FuzzInput(data)
    let image = input.take(Int(input.u16()))
    guard let channel = try? MessageChannel.connect(to: socketPath) else { fatalError("the daemon stopped accepting") }
    channel.setReceiveTimeout(seconds: 5)
    var eventFDs: [Int32] = []
    defer { eventFDs.forEach { close($0) } }
    for _ in 0 ..< 8 where !input.isEmpty {
        let json = input.take(Int(input.u16()))
        let specs = input.take(Int(input.u8() % 8))
        var fds: [Int32] = []
        for spec in specs {
            guard let fd = descriptor(spec, image: image) else { continue }
            fds.append(fd)
            if spec & 7 == 1 || spec & 7 > 5 { eventFDs.append(dup(fd)) }
        }
        let sent = json.withUnsafeBytes { bytes in
            fds.withUnsafeBufferPointer { fdpass_send(channel.fileDescriptor, bytes.baseAddress, bytes.count, $0.baseAddress, Int32(fds.count)) }
        }
        fds.forEach { close($0) }
        guard sent == json.count else { break }
        // The reply (a needsReset may come first); end of stream: the daemon closed on us.
        var replied = false
        while !replied {
            guard let (reply, fds) = (try? channel.receive(VGPUUser.Reply.self)) ?? nil else { return }
            fds.forEach { close($0) }
            if case .needsReset = reply { continue }
            replied = true
        }
        // Ring every doorbell: a served activation's device thread takes the chains now.
        for fd in eventFDs { var one: UInt64 = 1; _ = write(fd, &one, 8) }
    }
    // Hang up and wait for the session to give everything back, so its teardown is this input's.
    channel.shutDown()
    for _ in 0 ..< 5000 where !server.vgpus.isEmpty { usleep(200) }
}
