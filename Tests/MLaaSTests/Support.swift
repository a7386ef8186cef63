import Foundation
import Glibc
import MLaaS
import Testing

/// The service modules this build produced, and module directories made of copies of them.
enum Modules {
    /// Where SwiftPM put this build's products (the test bundle sits beside the .so files).
    static let products: String = {
        let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        return executable.deletingLastPathComponent().path
    }()

    static let preprocess = "libpreprocess.so"
    static let prefetch = "libprefetch.so"
    static let learnedSlice = "liblearned-slice.so"
    static let notAService = "libmlaas-fixture-not-a-service.so"
    static let futureABI = "libmlaas-fixture-future-abi.so"

    /// One directory of good modules for the whole test process: each module file is mapped
    /// once (modules stay mapped after unload) however many registries load it. Its own per
    /// process (another checkout's tests running at the same time would otherwise replace the
    /// files this process has mapped, and every later load would be refused as a rebuilt
    /// module), removed when the process exits, so runs leave nothing behind.
    static let shared: String = {
        let directory = sharedPath(pid: getpid())
        atexit {
            let path = Modules.sharedPath(pid: getpid())
            for file in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] { unlink(path + "/" + file) }
            rmdir(path)
        }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        for file in [preprocess, prefetch, learnedSlice, notAService, futureABI] {
            let staging = directory + "/.\(file).\(getpid())"
            try? FileManager.default.removeItem(atPath: staging)
            try! FileManager.default.copyItem(atPath: products + "/" + file, toPath: staging)
            chmod(staging, 0o755)
            precondition(rename(staging, directory + "/" + file) == 0, "cannot refresh \(directory)/\(file)")
        }
        return directory
    }()

    static func sharedPath(pid: pid_t) -> String { NSTemporaryDirectory() + "malvvm-mlaas-tests-\(geteuid())-\(pid)" }

    /// A new 0755 directory holding 0755 copies of `files` from the build products.
    static func directory(with files: [String]) throws -> String {
        let directory = NSTemporaryDirectory() + "malvvm-mlaas-\(getpid())-\(UInt32.random(in: 0 ... .max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        chmod(directory, 0o755)
        for file in files {
            let source = products + "/" + file
            guard FileManager.default.fileExists(atPath: source) else {
                throw ModulesError(message: "\(source) was not built (run 'swift build' before these tests)")
            }
            try FileManager.default.copyItem(atPath: source, toPath: directory + "/" + file)
            chmod(directory + "/" + file, 0o755)
        }
        return directory
    }

    struct ModulesError: Error, CustomStringConvertible { let message: String; var description: String { message } }

    /// A dataset file of `records` records of `bytesPerImage` pixels + a label byte each.
    static func dataset(records: Int, bytesPerImage: Int) throws -> String {
        let path = NSTemporaryDirectory() + "malvvm-mlaas-disk-\(getpid())-\(UInt32.random(in: 0 ... .max)).img"
        var bytes: [UInt8] = []
        for record in 0 ..< records {
            bytes += (0 ..< bytesPerImage).map { UInt8(truncatingIfNeeded: $0 &+ record) }
            bytes.append(UInt8(record % 10))
        }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }
}

/// `body`'s MLaaSError, or a recorded issue if it did not throw one.
func mlaasError(_ body: () throws(MLaaSError) -> Void, sourceLocation: SourceLocation = #_sourceLocation) -> MLaaSError? {
    do throws(MLaaSError) {
        try body()
        Issue.record("expected an MLaaSError", sourceLocation: sourceLocation)
        return nil
    } catch { return error }
}
