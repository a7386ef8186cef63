import Foundation
import Glibc
import Testing

/// MLaaS `prefetch` end to end on /dev/kvm (docs/mlaas.md, "prefetch"): `test=shuffleread` reads
/// the MNIST train records in one fixed shuffle, epoch after epoch, from a `direct` disk; the
/// run's metrics (`--metrics`: each disk's reads and read-ahead cache hits) say how much of it
/// the read-ahead served.
@Suite(.serialized) struct PrefetchGuestTests {
    static let dataset = Harness.packageRoot.appendingPathComponent("Guest/build/mnist.img").path

    /// 1,000 records, 3 epochs, no preprocessing: the reads alone, quick on a loaded CI host.
    static func run(_ extra: [String], modules: String, metrics: String, epochs: Int = 3, records: Int = 1000) -> [String] {
        ["run", "--kernel", Harness.guest, "--api-socket", "none", "--disk", dataset + ",readonly,direct",
         "--mlaas-dir", modules, "--metrics", metrics,
         "--cmdline", "test=shuffleread sr_records=\(records) sr_epochs=\(epochs) sr_work=0"] + extra
    }

    struct Disk: Decodable {
        let reads: UInt64
        let cacheHits: UInt64
        let fileBytes: UInt64
        let readAheadBytes: UInt64
    }

    static func disk(_ metrics: String) throws -> Disk {
        struct Report: Decodable { let disks: [Disk] }
        let decoder = JSONDecoder()
        decoder.keyDecodingStrategy = .convertFromSnakeCase
        let report = try decoder.decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: metrics)))
        return try #require(report.disks.first)
    }

    @Test(arguments: ["markov", "none"]) func theMarkovChainLearnsTheShuffleAndNoReadAheadServesNothing(_ policy: String) throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let metrics = modules.path + "/metrics.json"
        let services = policy == "none" ? [] : ["--mlaas", "prefetch", "--mlaas-config", "prefetch:policy=\(policy),order=2,window=8"]
        let result = try Harness.malvvm(Self.run(services, modules: modules.path, metrics: metrics), timeout: 300)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("shuffleread: PASS"), "\(result.stdout)")
        let disk = try Self.disk(metrics)
        // 3,000 record reads and the header's; the guest's driver may split none of them.
        #expect(disk.reads >= 3000, "\(disk)")
        let hitRate = Double(disk.cacheHits) / Double(disk.reads)
        if policy == "none" {
            #expect(disk.cacheHits == 0 && disk.readAheadBytes == 0, "\(disk)")
        } else {
            // Epoch 1 teaches the chain (order 2 needs two reads of context), epochs 2 and 3
            // should be served almost whole: two thirds of every read at best.
            #expect(hitRate > 0.5, "hit rate \(hitRate): \(disk)")
        }
    }

    /// All 4,000 records (3 MiB, more than the host's 1 MiB read-ahead cache: a smaller dataset
    /// ends up cached whole by any read-ahead, right or wrong).
    @Test func sequentialReadAheadBarelyHelpsAShuffle() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let metrics = modules.path + "/metrics.json"
        let result = try Harness.malvvm(Self.run(["--mlaas", "prefetch", "--mlaas-config", "prefetch:policy=sequential,window=8"],
                                                 modules: modules.path, metrics: metrics, epochs: 2, records: 4000), timeout: 300)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        let disk = try Self.disk(metrics)
        #expect(disk.readAheadBytes > 0, "\(disk)")
        #expect(Double(disk.cacheHits) / Double(disk.reads) < 0.5, "\(disk)")
    }

    @Test func badParametersStopTheRunWithOneLine() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        for (parameters, message) in [
            ("order=9", "order must be 1...4, not 9"),
            ("policy=lru", "policy must be markov or sequential, not 'lru'"),
            ("disk=2", "disk 2 is not granted to this service (the VM has 1 disk)"),
            ("window=0", "window must be 1...1024, not 0"),
            ("block=100", "block must be a multiple of 512 from 512 to 1048576, not 100"),
            ("speed=9", "unknown key 'speed' (known: disk, policy, order, window, block, table)"),
        ] {
            let result = try Harness.malvvm(Self.run(["--mlaas", "prefetch", "--mlaas-config", "prefetch:\(parameters)"],
                                                     modules: modules.path, metrics: modules.path + "/m.json"))
            #expect(result.status == MalvvmExit.failure, "\(parameters): \(result.stderr)")
            #expect(result.stderr.contains(message), "\(parameters): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(parameters): \(result.stderr)")
        }
        // Parameters for a service the VM did not select are a usage error.
        let unselected = try Harness.malvvm(Self.run(["--mlaas-config", "prefetch:order=2"], modules: modules.path,
                                                     metrics: modules.path + "/m.json"))
        #expect(unselected.status == MalvvmExit.usage, "\(unselected.stderr)")
    }

    @Test func unloadingWhileTheGuestReadsFallsBackToUncachedReads() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let metrics = modules.path + "/metrics.json"
        let api = modules.path + "/vm.sock"
        var arguments = Self.run(["--mlaas", "prefetch", "--name", "prefetchguest"], modules: modules.path, metrics: metrics, epochs: 8)
        arguments[arguments.firstIndex(of: "--api-socket")! + 1] = api
        let vm = try BackgroundProcess(arguments)
        #expect(vm.waitForOutput("shuffleread: epoch 2:", timeout: 240), "\(vm.output)")
        let unload = try Harness.malvvm(["mlaas", "unload", "--api", api, "prefetch"])
        #expect(unload.status == 0, "\(unload.stderr)")
        #expect(vm.finish(within: 300) == 0, "\(vm.output)")
        // Every epoch read the same bytes, cached or not.
        #expect(vm.output.contains("shuffleread: PASS"), "\(vm.output)")
        let disk = try Self.disk(metrics)
        #expect(disk.cacheHits > 0 && disk.cacheHits < disk.reads, "\(disk)")
    }
}
