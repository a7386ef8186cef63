import Foundation
import Testing

/// Runs the built `malvvm` binary, and QEMU, as a user would from a shell.
enum Harness {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    static let guest = packageRoot.appendingPathComponent("Guest/build/malvguest.elf").path
    static let guest32 = packageRoot.appendingPathComponent("Guest/build/malvguest32.elf").path

    /// The malvvm built next to this test bundle (swift test builds every product).
    static let malvvm: String = {
        let productsDirectory = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        return productsDirectory.appendingPathComponent("malvvm").path
    }()

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String
        var stdoutLines: [String] { stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) }
        var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    }

    /// Runs `executable` with a time limit; `interruptAfter` sends SIGINT that many seconds in.
    static func run(_ executable: String, _ arguments: [String], timeout: TimeInterval = 120,
                    interruptAfter: TimeInterval? = nil, wrapper: [String] = []) throws -> Result {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: wrapper.first ?? executable)
        process.arguments = wrapper.isEmpty ? arguments : Array(wrapper.dropFirst()) + [executable] + arguments
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        if let interruptAfter {
            Thread.sleep(forTimeInterval: interruptAfter)
            process.interrupt()
        }
        // Drain both pipes while waiting, so a chatty child never blocks on a full pipe.
        let group = DispatchGroup()
        let stdout = Collected(), stderr = Collected()
        for (pipe, sink) in [(out, stdout), (err, stderr)] {
            group.enter()
            DispatchQueue.global().async {
                sink.data = pipe.fileHandleForReading.readDataToEndOfFile()
                group.leave()
            }
        }
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning {
            process.terminate()
            Issue.record("\(executable) \(arguments) did not finish in \(timeout) s")
        }
        process.waitUntilExit()
        group.wait()
        return Result(status: process.terminationStatus, stdout: String(decoding: stdout.data, as: UTF8.self),
                      stderr: String(decoding: stderr.data, as: UTF8.self))
    }

    /// One pipe's bytes, written by its reader before `group.leave()` and read after `group.wait()`.
    private final class Collected: @unchecked Sendable {
        var data = Data()
    }

    static func malvvm(_ arguments: [String], timeout: TimeInterval = 120, interruptAfter: TimeInterval? = nil,
                       wrapper: [String] = []) throws -> Result {
        try run(malvvm, arguments, timeout: timeout, interruptAfter: interruptAfter, wrapper: wrapper)
    }

    /// Calls `body` (bind, connect) with the sockaddr_un of `path` and its length.
    static func withUnixAddress(_ path: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            let bytes = Array(path.utf8)
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
    }

    static func boot(_ test: String, kernel: String = guest, memory: String = "256M") throws -> Result {
        try malvvm(["run", "--kernel", kernel, "--memory", memory, "--cmdline", "test=\(test)"])
    }

    /// The same guest under QEMU's microvm, with isa-debug-exit on the same port. QEMU's status
    /// is (code << 1) | 1; the result carries the guest's own code, as malvvm reports it.
    static func qemu(_ test: String, kernel: String = guest, memory: String = "256M", smp: Int = 1) throws -> Result {
        let raw = try run("/usr/bin/qemu-system-x86_64", [
            "-M", "microvm,x-option-roms=off,rtc=off", "-enable-kvm", "-cpu", "host,-arch-capabilities",
            "-m", memory, "-smp", "\(smp)", "-nodefaults", "-no-user-config", "-nographic", "-serial", "stdio",
            "-kernel", kernel, "-append", "test=\(test)", "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ])
        let code = raw.status & 1 == 1 ? raw.status >> 1 : -raw.status
        return Result(status: code, stdout: raw.stdout, stderr: raw.stderr)
    }
}

/// A `malvvm` process left running while a test talks to it: its stdout goes to a file the
/// test can read at any time (all of it once the process has ended).
final class BackgroundProcess {
    let process = Process()
    let consolePath: String
    private var finalOutput: String?

    /// - Parameter fileLimit: the process's RLIMIT_NOFILE (through prlimit(1), which execs
    ///   malvvm in place, so the pid is malvvm's).
    /// - Parameter logs: its stderr (the log) goes to the same file as its stdout.
    /// - Parameter executable: another program than malvvm (a peer: QEMU).
    init(_ arguments: [String], fileLimit: Int? = nil, environment: [String: String] = [:], logs: Bool = false,
         executable: String = Harness.malvvm) throws {
        consolePath = NSTemporaryDirectory() + "malvvm-bg-\(getpid())-\(UInt32.random(in: 0 ... .max)).out"
        _ = FileManager.default.createFile(atPath: consolePath, contents: nil)
        if let fileLimit {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/prlimit")
            process.arguments = ["--nofile=\(fileLimit):\(fileLimit)", "--", executable] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
        }
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let console = FileHandle(forWritingAtPath: consolePath)
        process.standardOutput = console
        process.standardError = logs ? console : FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    deinit {
        if process.isRunning { kill(SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: consolePath)
    }

    var output: String { finalOutput ?? (try? String(contentsOfFile: consolePath, encoding: .utf8)) ?? "" }
    var isRunning: Bool { process.isRunning }

    /// Waits (bounded) for a line containing `text`; false if it never came.
    func waitForOutput(_ text: String, timeout: TimeInterval = 60) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return false
    }

    func kill(_ signal: Int32) { _ = Glibc.kill(process.processIdentifier, signal) }

    /// Waits up to `timeout` for the process to end (then kills it); its exit status.
    @discardableResult
    func finish(within timeout: TimeInterval) -> Int32 {
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.02) }
        if process.isRunning {
            Issue.record("\(process.arguments ?? []) did not end in \(timeout) s")
            kill(SIGKILL)
        }
        process.waitUntilExit()
        finalOutput = output
        return process.terminationStatus
    }
}

/// malvvm's own exit codes (README, "Exit codes"; `malvvm run --help`): above every code a
/// guest's passes through with (0-63), so the two can never be mistaken for each other.
enum MalvvmExit {
    /// A guest code ≥ 64 is reported as this.
    static let guestCodeLimit: Int32 = 63
    static let usage: Int32 = 64
    static let failure: Int32 = 70
    static let guestFault: Int32 = 71
}

/// A PVH kernel of a few hand-assembled bytes: one ELF64 segment at 1 MiB holding `code` (run in
/// 32-bit protected mode from its first byte) and the Xen PVH entry note pointing there. For
/// guest endings the test guest never takes: any exit code, a triple fault.
struct TinyKernel {
    let path: String

    /// `mov eax, code ; out 0xf4, eax ; hlt`: the guest exits with `code`.
    init(exitCode code: UInt32) throws {
        try self.init(code: [0xb8] + withUnsafeBytes(of: code.littleEndian, Array.init) + [0xe7, 0xf4, 0xf4])
    }

    init(code: [UInt8]) throws {
        func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
        let entry: UInt64 = 0x10_0000
        // name "Xen\0", 4-byte descriptor, type 18 (XEN_ELFNOTE_PHYS32_ENTRY)
        let note = le(UInt32(4)) + le(UInt32(4)) + le(UInt32(18)) + Array("Xen\0".utf8) + le(UInt32(entry))
        let headers = 64 + 2 * 56
        var elf: [UInt8] = [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 8)
        elf += le(UInt16(2)) + le(UInt16(62)) + le(UInt32(1))  // ET_EXEC, x86-64, version
        elf += le(entry) + le(UInt64(64)) + le(UInt64(0)) + le(UInt32(0))  // entry, phoff, shoff, flags
        elf += le(UInt16(64)) + le(UInt16(56)) + le(UInt16(2)) + le(UInt16(0)) + le(UInt16(0)) + le(UInt16(0))
        func programHeader(type: UInt32, offset: Int, address: UInt64, fileSize: Int, memorySize: Int) -> [UInt8] {
            le(type) + le(UInt32(5)) + le(UInt64(offset)) + le(address) + le(address) + le(UInt64(fileSize))
                + le(UInt64(memorySize)) + le(UInt64(4096))
        }
        elf += programHeader(type: 1, offset: headers, address: entry, fileSize: code.count, memorySize: code.count)
        elf += programHeader(type: 4, offset: headers + code.count, address: 0, fileSize: note.count, memorySize: 0)
        elf += code + note
        path = NSTemporaryDirectory() + "malvvm-tiny-\(getpid())-\(UInt32.random(in: 0 ... .max)).elf"
        try Data(elf).write(to: URL(fileURLWithPath: path))
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}
