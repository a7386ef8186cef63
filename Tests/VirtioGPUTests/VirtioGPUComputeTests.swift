@testable import VGPUCore
import GPUHost
@testable import Hypervisor
import Testing
@testable import VirtioGPU

/// SUBMIT_3D end to end: command streams over GUEST blobs, fences, and hostile streams that
/// must fail alone while another context keeps computing.
private let m = 4, n = 6, k = 8

@Suite struct VirtioGPUComputeTests {
    // Input blob layout: A (m×k) at 0, B (k×n) at 128, bias (n) at 320; output C (m×n).
    static let aOffset: UInt64 = 0, bOffset: UInt64 = 128, biasOffset: UInt64 = 320
    static let inputSize: UInt64 = 344, outputSize: UInt64 = 96

    /// A context with an input and an output GUEST blob, attached, at `base` in guest memory.
    /// The input blob's pages are split in two entries, to cross an entry boundary.
    struct Dense {
        let context: UInt32
        let input: UInt32
        let output: UInt32
        let base: UInt64
        let a: [Float], b: [Float], bias: [Float]

        var inputAddress: UInt64 { base }
        var outputAddress: UInt64 { base + 0x2000 }

        func expected() -> [Float] { referenceDense(a, b, bias, m: m, n: n, k: k) }
    }

    func makeDense(_ driver: GPUDriver, context: UInt32, input: UInt32, output: UInt32, base: UInt64,
                   seed: Float) throws -> Dense {
        let a = (0 ..< m * k).map { Float(($0 * 7) % 11) * 0.25 - 1 + seed }
        let b = (0 ..< k * n).map { Float(($0 * 5) % 13) * 0.125 - 0.75 }
        let bias = (0 ..< n).map { Float($0) * 0.5 - 1.25 }
        let dense = Dense(context: context, input: input, output: output, base: base, a: a, b: b, bias: bias)
        // The first 200 bytes of the input blob sit at base, the rest one page further.
        let split: UInt64 = 200
        let image: [Float] = a + b + bias
        var bytes: [UInt8] = []
        for value in image { for i in 0 ..< 4 { bytes.append(UInt8(truncatingIfNeeded: value.bitPattern >> (8 * UInt32(i)))) } }
        try driver.memory.write(Array(bytes[..<Int(split)]), at: GuestAddress(base))
        try driver.memory.write(Array(bytes[Int(split)...]), at: GuestAddress(base + 0x1000))
        try driver.memory.fill(0xff, at: GuestAddress(dense.outputAddress), length: Self.outputSize)  // NaN garbage

        #expect(try driver.call(GPUDriver.createContext(context)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(input, context: context, memory: .guest, size: Self.inputSize,
                                                     entries: [(base, UInt32(split)), (base + 0x1000, UInt32(Self.inputSize - split))]))
            == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.createBlob(output, context: context, memory: .guest, size: Self.outputSize,
                                                     entries: [(dense.outputAddress, UInt32(Self.outputSize))]))
            == Response.okNoData.rawValue)
        for resource in [input, output] {
            #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: context, [resource, 0]))
                == Response.okNoData.rawValue)
        }
        return dense
    }

    /// SGEMM + bias + ReLU as one batch.
    func denseStream(_ d: Dense) -> StreamBuilder {
        var s = StreamBuilder()
        let c = StreamBuilder.ref(d.output, offset: 0, length: UInt32(Self.outputSize))
        s.sgemm(m: UInt32(m), n: UInt32(n), k: UInt32(k),
                a: StreamBuilder.ref(d.input, offset: Self.aOffset, length: UInt32(m * k * 4)),
                b: StreamBuilder.ref(d.input, offset: Self.bOffset, length: UInt32(k * n * 4)), c: c)
        s.biasAdd(outer: UInt32(m), channels: UInt32(n), data: c,
                  bias: StreamBuilder.ref(d.input, offset: Self.biasOffset, length: UInt32(n * 4)))
        s.relu(count: UInt32(m * n), input: c, output: c)
        return s
    }

    func expectResult(_ driver: GPUDriver, _ d: Dense) throws {
        let got = try driver.readFloats(at: d.outputAddress, count: m * n)
        let want = d.expected()
        #expect(zip(got, want).allSatisfy { abs($0 - $1) <= 1e-4 * max(1, abs($1)) }, "got \(got), want \(want)")
    }

    @Test func runsADenseLayerOnGuestBlobsAndSignalsItsFence() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        let interruptsBefore = driver.interrupts.value.load(ordering: .relaxed)
        let head = try driver.send(GPUDriver.submit(context: 1, stream: denseStream(dense).bytes, fence: 42, ring: 3))
        let (header, bytes) = try driver.response(head)
        #expect(header.type == Response.okNoData.rawValue)
        #expect(bytes.count == 24)
        // The response echoes the fence: flags, id, context and ring.
        #expect(header.flags == VirtioGPUProtocol.flagFence | VirtioGPUProtocol.flagInfoRingIndex)
        #expect(header.fenceID == 42 && header.contextID == 1 && header.ringIndex == 3)
        #expect(driver.interrupts.value.load(ordering: .relaxed) > interruptsBefore)
        try expectResult(driver, dense)
        // Only the output went back into guest memory: the input pages are untouched.
        #expect(try driver.readFloats(at: dense.inputAddress, count: 4) == Array(dense.a.prefix(4)))
    }

    @Test func copiesBetweenBlobsAndRunsManySubmissionsInOrder() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        // Ten fenced submissions, each scaling the output by 2 after a copy of the bias in.
        var heads: [UInt16] = []
        var s = StreamBuilder()
        s.copy(source: StreamBuilder.ref(1, offset: Self.biasOffset, length: 16), destination: StreamBuilder.ref(2, offset: 0, length: 16))
        heads.append(try driver.send(GPUDriver.submit(context: 1, stream: s.bytes, fence: 1)))
        for fence in 2 ... 10 {
            var step = StreamBuilder()
            step.scale(count: 4, alpha: 2, x: StreamBuilder.ref(2, offset: 0, length: 16))
            heads.append(try driver.send(GPUDriver.submit(context: 1, stream: step.bytes, fence: UInt64(fence))))
        }
        var fences: [UInt64] = []
        for head in heads {
            let (header, _) = try driver.response(head)
            #expect(header.type == Response.okNoData.rawValue)
            fences.append(header.fenceID)
        }
        #expect(fences == Array(1 ... 10))
        #expect(try driver.readFloats(at: dense.outputAddress, count: 4) == dense.bias.prefix(4).map { $0 * 512 })
    }

    @Test func holdsAFenceBackUntilEarlierFencesOfItsTimelineAreDone() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        _ = try driver.collect()
        // A fenced submission (answered later, by the context's thread) and then a fenced
        // command the device answers at once: on the global timeline the second must not be
        // returned before the first, or a Linux driver would retire fence 7 early.
        let slow = try driver.send(GPUDriver.submit(context: 1, stream: denseStream(dense).bytes, fence: 7))
        let quick = try driver.send(GPUDriver.simple(.getDisplayInfo, fence: 8), responseRoom: 512)
        _ = try driver.response(quick)
        _ = try driver.response(slow)
        // Both are back; the used ring shows the order they were returned in.
        let used = try driver.ring.usedIndex()
        let last = try driver.ring.usedEntry(used &- 1)
        let before = try driver.ring.usedEntry(used &- 2)
        #expect(before.id == UInt32(slow) && last.id == UInt32(quick))
    }

    /// Streams each of which must be refused whole.
    static func hostileStreams(_ d: Dense, foreign: UInt32) -> [(String, [UInt8], Response)] {
        let goodA = StreamBuilder.ref(d.input, offset: aOffset, length: UInt32(m * k * 4))
        let goodB = StreamBuilder.ref(d.input, offset: bOffset, length: UInt32(k * n * 4))
        let goodC = StreamBuilder.ref(d.output, offset: 0, length: UInt32(outputSize))
        func sgemm(a: [UInt8]? = nil, b: [UInt8]? = nil, c: [UInt8]? = nil, rows: UInt32? = nil) -> [UInt8] {
            var s = StreamBuilder()
            let (a, b, c, rows) = (a ?? goodA, b ?? goodB, c ?? goodC, rows ?? UInt32(m))
            // A valid first command: proves nothing of a refused stream runs.
            s.scale(count: UInt32(outputSize / 4), alpha: 0, x: goodC)
            s.sgemm(m: rows, n: UInt32(n), k: UInt32(k), a: a, b: b, c: c)
            return s.bytes
        }
        var unknown = StreamBuilder()
        unknown.raw(99, [UInt8](repeating: 0, count: 16))
        var badLength = StreamBuilder()
        badLength.raw(ComputeStream.Opcode.scale.rawValue, [UInt8](repeating: 0, count: 24), length: 64)
        var badMagic = StreamBuilder()
        badMagic.magic = 0x1234
        badMagic.scale(count: 1, alpha: 1, x: goodC)
        var badVersion = StreamBuilder()
        badVersion.version = 2
        badVersion.scale(count: 1, alpha: 1, x: goodC)
        var zeroCount = StreamBuilder()
        zeroCount.declaredCount = 0
        var hugeCount = StreamBuilder()
        hugeCount.declaredCount = .max
        hugeCount.scale(count: 1, alpha: 1, x: goodC)
        var moreThanSent = StreamBuilder()
        moreThanSent.declaredCount = 3
        moreThanSent.scale(count: 1, alpha: 1, x: goodC)
        var badEnum = StreamBuilder()
        var activationBody = WireWriter()
        activationBody.u32(7)  // no activation 7
        activationBody.u32(24)
        activationBody.append(goodC + goodC)
        badEnum.raw(ComputeStream.Opcode.activation.rawValue, activationBody.bytes)
        var trailing = sgemm()
        trailing += [0, 0, 0, 0]

        return [
            ("unknown resource", sgemm(a: StreamBuilder.ref(99, offset: 0, length: UInt32(m * k * 4))), .errorInvalidResourceID),
            ("resource id 0", sgemm(a: StreamBuilder.ref(0, offset: 0, length: UInt32(m * k * 4))), .errorInvalidResourceID),
            ("another context's resource", sgemm(a: StreamBuilder.ref(foreign, offset: 0, length: UInt32(m * k * 4))),
             .errorInvalidResourceID),
            ("offset past the blob", sgemm(b: StreamBuilder.ref(d.input, offset: 200, length: UInt32(k * n * 4))),
             .errorInvalidParameter),
            ("offset overflows", sgemm(b: StreamBuilder.ref(d.input, offset: .max - 3, length: UInt32(k * n * 4))),
             .errorInvalidParameter),
            ("misaligned offset", sgemm(b: StreamBuilder.ref(d.input, offset: 130, length: UInt32(k * n * 4))),
             .errorInvalidParameter),
            ("zero-length range", sgemm(c: StreamBuilder.ref(d.output, offset: 0, length: 0)), .errorInvalidParameter),
            ("huge length", sgemm(c: StreamBuilder.ref(d.output, offset: 0, length: .max)), .errorInvalidParameter),
            ("wrong shape", sgemm(rows: UInt32(m + 1)), .errorInvalidParameter),
            ("zero dimension", sgemm(rows: 0), .errorInvalidParameter),
            ("output aliases input", sgemm(c: StreamBuilder.ref(d.input, offset: 0, length: UInt32(outputSize))),
             .errorInvalidParameter),
            ("unknown opcode", unknown.bytes, .errorInvalidParameter),
            ("length field disagrees", badLength.bytes, .errorInvalidParameter),
            ("truncated command", Array(sgemm().dropLast(10)), .errorInvalidParameter),
            ("truncated header", Array(sgemm().prefix(10)), .errorInvalidParameter),
            ("trailing bytes", trailing, .errorInvalidParameter),
            ("bad magic", badMagic.bytes, .errorInvalidParameter),
            ("bad version", badVersion.bytes, .errorInvalidParameter),
            ("zero commands", zeroCount.bytes, .errorInvalidParameter),
            ("overflowing command count", hugeCount.bytes, .errorInvalidParameter),
            ("count beyond the commands sent", moreThanSent.bytes, .errorInvalidParameter),
            ("undefined activation", badEnum.bytes, .errorInvalidParameter),
        ]
    }

    @Test func refusesHostileStreamsAndKeepsEveryContextComputing() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let victim = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        let attacker = try makeDense(driver, context: 2, input: 3, output: 4, base: GPUDriver.dataBase + 0x10000, seed: 1)
        // The victim's blob, attached to the attacker too: attaching is not owning.
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 2, [1, 0])) == Response.okNoData.rawValue)
        let marker = try driver.readFloats(at: attacker.outputAddress, count: 24)

        for (name, stream, expected) in Self.hostileStreams(attacker, foreign: victim.input) {
            let (header, _) = try driver.response(try driver.send(GPUDriver.submit(context: 2, stream: stream, fence: 1)))
            #expect(header.type == expected.rawValue, "\(name)")
            #expect(header.fenceID == 1, "\(name)")
            // Nothing of the stream ran: the attacker's output still holds its garbage.
            #expect(try driver.readFloats(at: attacker.outputAddress, count: 24).map(\.bitPattern) == marker.map(\.bitPattern),
                    "\(name)")
        }
        // SUBMIT_3D framing: a size past what was sent, size 0, in-fences, no such context.
        let stream = denseStream(attacker).bytes
        let framing: [([UInt8], Response)] = [
            (GPUDriver.submit(context: 2, stream: stream, declaredSize: UInt32(stream.count + 4)), .errorInvalidParameter),
            (GPUDriver.submit(context: 2, stream: stream, declaredSize: 0), .errorInvalidParameter),
            (GPUDriver.submit(context: 2, stream: stream, declaredSize: .max), .errorInvalidParameter),
            (GPUDriver.submit(context: 2, stream: stream, inFences: 1), .errorInvalidParameter),
            (GPUDriver.submit(context: 9, stream: stream), .errorInvalidContextID),
            (Array(GPUDriver.submit(context: 2, stream: stream).prefix(28)), .errorUnspecified),
        ]
        for (request, expected) in framing { #expect(try driver.call(request) == expected.rawValue) }

        // Both contexts still compute correctly.
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: denseStream(victim).bytes, fence: 2)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 2, stream: denseStream(attacker).bytes, fence: 3)) == Response.okNoData.rawValue)
        try expectResult(driver, victim)
        try expectResult(driver, attacker)
    }

    @Test func completesTwoContextsRingsInOrderWhileBothRun() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let first = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        let second = try makeDense(driver, context: 2, input: 3, output: 4, base: GPUDriver.dataBase + 0x10000, seed: 1)
        // Interleaved fenced submissions on two rings of each context, 12 in flight at once,
        // completed by two threads while this one keeps the queue going.
        var expected: [UInt16: (context: UInt32, ring: UInt8, fence: UInt64)] = [:]
        var fence: UInt64 = 100
        for _ in 0 ..< 6 {
            for (dense, ring) in [(first, UInt8(0)), (second, UInt8(0)), (first, UInt8(1)), (second, UInt8(5))] {
                fence += 1
                let head = try driver.send(GPUDriver.submit(context: dense.context, stream: denseStream(dense).bytes,
                                                            fence: fence, ring: ring))
                expected[head] = (dense.context, ring, fence)
            }
            for head in expected.keys.sorted() {
                let (header, _) = try driver.response(head)
                let want = expected.removeValue(forKey: head)!
                #expect(header.type == Response.okNoData.rawValue)
                #expect(header.contextID == want.context && header.ringIndex == want.ring && header.fenceID == want.fence)
            }
        }
        // Per ring, fences came back in the order they were queued.
        var lastFence: [String: UInt64] = [:]
        var checked = 0
        for header in driver.returned where header.fenced && header.fenceID > 100 {
            let key = "\(header.contextID)/\(header.ringIndex)"
            if let last = lastFence[key] { #expect(header.fenceID > last, "ring \(key)") }
            lastFence[key] = header.fenceID
            checked += 1
        }
        #expect(checked == 24)
        try expectResult(driver, first)
        try expectResult(driver, second)
    }

    @Test func aDestroyedContextsResourcesCannotBeUsed() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let first = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        let second = try makeDense(driver, context: 2, input: 3, output: 4, base: GPUDriver.dataBase + 0x10000, seed: 1)
        #expect(try driver.call(GPUDriver.simple(.contextDestroy, context: 1)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: denseStream(first).bytes)) == Response.errorInvalidContextID.rawValue)
        // Its blobs still exist (until UNREF) but have no GPU memory: context 2 cannot use them.
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 2, [1, 0])) == Response.okNoData.rawValue)
        var s = StreamBuilder()
        s.copy(source: StreamBuilder.ref(1, offset: 0, length: 16), destination: StreamBuilder.ref(4, offset: 0, length: 16))
        #expect(try driver.call(GPUDriver.submit(context: 2, stream: s.bytes)) == Response.errorInvalidResourceID.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceUnref, [1, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 2, stream: denseStream(second).bytes)) == Response.okNoData.rawValue)
        try expectResult(driver, second)
    }

    @Test func unrefAndDestroyWaitForTheWorkQueuedBeforeThem() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        // Submit, then at once unref the output and destroy the context: the submission still
        // completes into the guest pages, and the unref and destroy answer after it.
        let submit = try driver.send(GPUDriver.submit(context: 1, stream: denseStream(dense).bytes, fence: 1))
        let unref = try driver.send(GPUDriver.simple(.resourceUnref, [2, 0]))
        let destroy = try driver.send(GPUDriver.simple(.contextDestroy, context: 1))
        #expect(try driver.response(destroy).header.type == Response.okNoData.rawValue)
        #expect(try driver.response(unref).header.type == Response.okNoData.rawValue)
        #expect(try driver.response(submit).header.type == Response.okNoData.rawValue)
        // The used ring shows the submission returned first.
        let lastThree = Array(driver.returned.suffix(3))
        #expect(lastThree.count == 3 && lastThree[0].fenced && lastThree[0].fenceID == 1)
        #expect(lastThree.allSatisfy { $0.type == Response.okNoData.rawValue })
        try expectResult(driver, dense)
        #expect(driver.scheduler.clientIDs.isEmpty)
        // The input blob outlives its context until UNREF.
        #expect(try driver.call(GPUDriver.simple(.resourceUnref, [1, 0])) == Response.okNoData.rawValue)
    }

    @Test func aGuestBlobOutsideAnyContextCannotBeComputedOn() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        #expect(try driver.call(GPUDriver.createBlob(9, context: 0, memory: .guest, size: 64,
                                                     entries: [(GPUDriver.dataBase + 0x8000, 64)])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 1, [9, 0])) == Response.okNoData.rawValue)
        var s = StreamBuilder()
        s.copy(source: StreamBuilder.ref(9, offset: 0, length: 16), destination: StreamBuilder.ref(dense.output, offset: 0, length: 16))
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: s.bytes)) == Response.errorInvalidResourceID.rawValue)
        #expect(try driver.call(GPUDriver.transfer(true, context: 1, resource: 9, x: 0, width: 16, offset: 0))
            == Response.errorInvalidResourceID.rawValue)
    }

    @Test func releasesSchedulerClientsWhenTheDeviceGoes() throws {
        let scheduler = try GPUScheduler(backend: CPUBackend())
        defer { scheduler.stop() }
        do {
            let driver = try GPUDriver(scheduler: scheduler)
            #expect(try driver.call(GPUDriver.createContext(1)) == Response.okNoData.rawValue)
            #expect(scheduler.clientIDs.count == 1)
        }
        #expect(scheduler.clientIDs.isEmpty)
    }

    @Test func boundsTheKernelsQueuedInTheVMM() throws {
        let driver = try GPUDriver(maxQueuedKernels: 3)
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        var four = denseStream(dense)
        four.relu(count: UInt32(m * n), input: StreamBuilder.ref(2, offset: 0, length: UInt32(Self.outputSize)),
                  output: StreamBuilder.ref(2, offset: 0, length: UInt32(Self.outputSize)))
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: four.bytes, fence: 1)) == Response.errorOutOfMemory.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: denseStream(dense).bytes, fence: 2)) == Response.okNoData.rawValue)
        // The count went back down when the batch ran: another fits.
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: denseStream(dense).bytes, fence: 3)) == Response.okNoData.rawValue)
        try expectResult(driver, dense)
    }

    @Test func aDetachedBackingStopsComputeOnAGuestBlob() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        #expect(try driver.call(GPUDriver.simple(.resourceDetachBacking, [2, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: denseStream(dense).bytes)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.attachBacking(2, entries: [(dense.outputAddress, UInt32(Self.outputSize))]))
            == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: denseStream(dense).bytes)) == Response.okNoData.rawValue)
        try expectResult(driver, dense)
    }

    /// A training loop sends the same stream every step: it is decoded and validated once, and
    /// any change to the resources it names makes the next one validated again, not trusted.
    @Test func aRepeatedStreamIsDecodedOnceUntilItsResourcesChange() throws {
        let driver = try GPUDriver()
        defer { driver.shutdown() }
        let dense = try makeDense(driver, context: 1, input: 1, output: 2, base: GPUDriver.dataBase, seed: 0)
        let stream = denseStream(dense).bytes
        func hits() -> UInt64 { driver.device.statistics.decodeCacheHits }
        for _ in 0 ..< 3 { #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream)) == Response.okNoData.rawValue) }
        #expect(hits() == 2)
        try expectResult(driver, dense)

        // A detached backing: the same bytes are refused, not served from the cache.
        #expect(try driver.call(GPUDriver.simple(.resourceDetachBacking, [2, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream)) == Response.errorInvalidParameter.rawValue)
        #expect(try driver.call(GPUDriver.attachBacking(2, entries: [(dense.outputAddress, UInt32(Self.outputSize))]))
            == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream)) == Response.okNoData.rawValue)
        #expect(hits() == 3)

        // A resource detached from the context, then one unreferenced: refused each time.
        #expect(try driver.call(GPUDriver.simple(.contextDetachResource, context: 1, [2, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream)) == Response.errorInvalidResourceID.rawValue)
        #expect(try driver.call(GPUDriver.simple(.contextAttachResource, context: 1, [2, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.simple(.resourceUnref, [1, 0])) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 1, stream: stream)) == Response.errorInvalidResourceID.rawValue)
        #expect(hits() == 3)

        // The same bytes from another context are that context's to validate: refused there.
        #expect(try driver.call(GPUDriver.createContext(2)) == Response.okNoData.rawValue)
        #expect(try driver.call(GPUDriver.submit(context: 2, stream: stream)) == Response.errorInvalidResourceID.rawValue)
    }
}
