import ArgumentParser
import ControlAPI
import Foundation
import GPUBenchmarks
import GPUHost

extension Malvvm.Bench {
    /// GPUHost's benchmark (scripts/bench-gpu and scripts/gpu-check run it in release mode).
    struct GPU: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gpu",
            abstract: "GPUHost's benchmark: kernels against direct Vulkan, the scheduler's sharing, sgemm throughput.",
            discussion: """
            scripts/bench-gpu runs 'plan', alternating rounds of vkdirect and 'kernels', then 'run'; \
            scripts/gpu-check runs 'gemm' beside PyTorch's matmul, and 'replay'.
            """,
            subcommands: [Plan.self, Kernels.self, Report.self, GEMM.self, Replay.self, Transfer.self, LearnedSlice.self]
        )
    }
}

extension Malvvm.Bench.GPU {
    static func vulkan() throws -> VulkanBackend {
        do { return try VulkanBackend(selector: .automatic) } catch {
            throw RuntimeFailure(message: "no Vulkan device: \(error)")
        }
    }

    /// A benchmark's failure is a runtime failure (exit 70), not a usage mistake.
    static func measuring<T>(_ body: () throws(GPUBenchmarkError) -> T) throws -> T {
        do { return try body() } catch { throw RuntimeFailure(message: error.description) }
    }

    static func progress(_ line: String) {
        FileHandle.standardError.write(Data("bench gpu: \(line)\n".utf8))
    }

    struct Plan: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Write the kernel cases as raw dispatches for bench/vkdirect.")

        @Argument(help: ArgumentHelp("Where to write the plan.", valueName: "plan"))
        var path: String

        func run() throws {
            let backend = try Malvvm.Bench.GPU.vulkan()
            let text = try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in try KernelBenchmark.plan(on: backend) }
            do { try text.write(toFile: path, atomically: true, encoding: .utf8) } catch {
                throw RuntimeFailure(message: "cannot write \(path): \(error.localizedDescription)")
            }
        }
    }

    struct Kernels: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "One round of the kernel cases through GPUHost's Vulkan backend ('NAME WALL_NS DEVICE_NS' lines).")

        func run() throws {
            let backend = try Malvvm.Bench.GPU.vulkan()
            print(try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in try KernelBenchmark.round(on: backend) },
                  terminator: "")
        }
    }

    struct Report: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run",
            abstract: "Compare kernel rounds with vkdirect's, measure the scheduler's sharing, and write the report.")

        @Option(help: ArgumentHelp("Rounds of 'malvvm bench gpu kernels'.", valueName: "file"))
        var ours: String?

        @Option(help: ArgumentHelp("Rounds of bench/vkdirect.", valueName: "file"))
        var direct: String?

        @Option(help: ArgumentHelp("Where to write the JSON report.", valueName: "file"))
        var json: String

        @Option(help: ArgumentHelp("Where to write the share-over-time CSV.", valueName: "file"))
        var shares: String

        @Option(help: ArgumentHelp("Measured seconds per sharing row.", valueName: "s"))
        var seconds: Double = 2

        func validate() throws {
            guard seconds > 0, seconds <= 600 else { throw ValidationError("bad --seconds \(seconds) (0..600)") }
        }

        func rounds(_ path: String?) throws -> [String: RoundTime] {
            guard let path else { return [:] }
            do { return KernelBenchmark.bestRounds(try String(contentsOfFile: path, encoding: .utf8)) } catch {
                throw RuntimeFailure(message: "cannot read \(path): \(error.localizedDescription)")
            }
        }

        func run() throws {
            let backend = try Malvvm.Bench.GPU.vulkan()
            let kernels = KernelBenchmark.compare(ours: try rounds(ours), direct: try rounds(direct))
            let seconds = seconds
            let (sharing, timeline) = try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in
                (try SharingBenchmark.table(on: backend, seconds: seconds, progress: Malvvm.Bench.GPU.progress),
                 try SharingBenchmark.timeline(on: backend))
            }

            var kernelTable = TextTable(header: ["kernel", "unit", "ours", "direct", "ours us", "direct us", "ratio"],
                                        rightAligned: [2, 3, 4, 5, 6])
            for k in kernels {
                kernelTable.append([k.name, k.unit, fixed(k.ours), k.direct.map { fixed($0) } ?? "-",
                                    fixed(Double(k.oursWallNanoseconds) / 1000, 0),
                                    k.directWallNanoseconds.map { fixed(Double($0) / 1000, 0) } ?? "-",
                                    k.overheadRatio.map { fixed($0, 3) } ?? "-"])
            }
            var shareTable = TextTable(header: ["policy", "clients", "util", "jain", "max err", "p50 q us", "p99 q us",
                                                "decision ns", "p99 ns", "slices", "overruns"],
                                       rightAligned: Set(1 ... 10))
            for s in sharing {
                shareTable.append([s.policy, "\(s.clients)", fixed(s.utilisation, 3), fixed(s.jain, 4), fixed(s.maxShareError, 4),
                                   fixed(s.queueingP50Microseconds, 0), fixed(s.queueingP99Microseconds, 0),
                                   fixed(s.decisionOverheadMeanNanoseconds, 0), "\(s.decisionOverheadP99Nanoseconds)",
                                   "\(s.slices)", "\(s.sliceOverruns)"])
            }
            print("GPUHost benchmark on \(backend.device.name) (\(backend.device.driverName ?? "?"))")
            print("\nKernels: median wall time per batch (submit to completion), best of alternating rounds;")
            print("ratio = ours / direct Vulkan, same SPIR-V and grid (goal <= 1.05)")
            print(kernelTable.render())
            print("\nSharing: sgemm 64^3 x2 batches, closed loop depth 2, \(fixed(seconds, 1)) s per row; decision overhead goal < 5000 ns")
            print(shareTable.render())

            let report = GPUBenchmarkReport(device: backend.device.name, driver: backend.device.driverName,
                                            kernels: kernels, sharing: sharing)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            do {
                try encoder.encode(report).write(to: URL(fileURLWithPath: json))
                try timeline.write(toFile: shares, atomically: true, encoding: .utf8)
            } catch {
                throw RuntimeFailure(message: "cannot write results: \(error.localizedDescription)")
            }
        }
    }

    struct GEMM: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gemm",
            abstract: "sgemm TFLOP/s per square size, for comparison with PyTorch's back-to-back matmul.",
            discussion: """
            Prints, per size, one line a script can split into key/value pairs after the size:
              gemm 512 ours_tflops 7.12 ms 0.0377 variant tile64 iterations 1000 wall_tflops 6.95 timing deviceTimestamps
            (ours_tflops and ms from device time per sgemm, the variant the backend chooses on its own); with \
            --each-variant also one line per sgemm variant forced at that size:
              gemm-variant 512 tile128 tflops 4.01 ms 0.0669 iterations 1000 wall_tflops 3.9
            """)

        @Option(help: ArgumentHelp("Square sizes, comma-separated.", valueName: "n,n"))
        var sizes: String = "512,2048"

        @Option(help: ArgumentHelp("Seconds of timed batches per size.", valueName: "s"))
        var seconds: Double = 1

        @Flag(help: "Also measure every sgemm variant forced at each size.")
        var eachVariant = false

        func parsedSizes() throws -> [Int] {
            let parsed = sizes.split(separator: ",").map { Int($0) }
            guard !parsed.isEmpty, parsed.allSatisfy({ ($0 ?? 0) > 0 && ($0 ?? 0) <= 16384 }) else {
                throw ValidationError("bad --sizes '\(sizes)': positive integers up to 16384, e.g. 512,2048")
            }
            return parsed.compactMap { $0 }
        }

        func validate() throws {
            _ = try parsedSizes()
            guard seconds > 0, seconds <= 600 else { throw ValidationError("bad --seconds \(seconds) (0..600)") }
        }

        func run() throws {
            let backend = try Malvvm.Bench.GPU.vulkan()
            Malvvm.Bench.GPU.progress("gemm on \(backend.device.name) (\(backend.device.driverName ?? "?"))")
            // Four significant digits: TFLOP/s span 0.004 (lavapipe) to 50 (H200).
            func significant(_ value: Double) -> String { String(format: "%.4g", value) }
            for size in try parsedSizes() {
                let chosen = SGEMMVariant.select(m: size, n: size, k: size)
                let m = try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in
                    try GEMMBenchmark.measure(on: backend, size: size, seconds: seconds)
                }
                print("gemm \(size) ours_tflops \(significant(m.deviceTFLOPS)) ms \(significant(m.deviceNanoseconds / 1e6))"
                    + " variant \(chosen.rawValue) iterations \(m.iterations) wall_tflops \(significant(m.wallTFLOPS))"
                    + " timing \(m.timing.rawValue)")
                if eachVariant {
                    for variant in SGEMMVariant.allCases {
                        let v = try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in
                            try GEMMBenchmark.measure(on: backend, size: size, seconds: seconds, variant: variant)
                        }
                        print("gemm-variant \(size) \(variant.rawValue) tflops \(significant(v.deviceTFLOPS))"
                            + " ms \(significant(v.deviceNanoseconds / 1e6)) iterations \(v.iterations)"
                            + " wall_tflops \(significant(v.wallTFLOPS))")
                    }
                }
                fflush(nil)
            }
        }
    }
}

extension Malvvm.Bench.GPU {
    struct Replay: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Host time to submit a repeated training epoch: recorded each time against replayed.",
            discussion: """
            A batch shaped like the guest's test=train epoch (MLP 64-128-10, 15 kernels a step), \
            validated anew and recorded each time, alternating with one validated batch whose \
            recording the backend replays. Prints one line a script can split into key/value pairs:
              replay kernels 675 record_submit_us 2900 replay_submit_us 40 submit_ratio 72.5 record_wall_us ... \
            replay_wall_us ... device_us ...
            """)

        @Option(help: ArgumentHelp("Training steps in the epoch.", valueName: "n"))
        var steps = 45

        @Option(help: ArgumentHelp("Batches timed each way.", valueName: "n"))
        var rounds = 20

        func validate() throws {
            guard (1 ... 1000).contains(steps) else { throw ValidationError("bad --steps \(steps) (1...1000)") }
            guard (1 ... 10000).contains(rounds) else { throw ValidationError("bad --rounds \(rounds) (1...10000)") }
        }

        func run() throws {
            let backend = try Malvvm.Bench.GPU.vulkan()
            Malvvm.Bench.GPU.progress("replay on \(backend.device.name): \(rounds) epochs of \(steps) steps each way")
            let m = try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in
                try ReplayBenchmark.measure(on: backend, steps: steps, rounds: rounds)
            }
            func us(_ nanoseconds: Double?) -> String { nanoseconds.map { fixed($0 / 1000, 1) } ?? "-" }
            print("replay kernels \(m.kernels) record_submit_us \(us(m.recordSubmitNanoseconds))"
                + " replay_submit_us \(us(m.replaySubmitNanoseconds))"
                + " submit_ratio \(fixed(m.recordSubmitNanoseconds / max(m.replaySubmitNanoseconds, 1), 2))"
                + " record_wall_us \(us(m.recordWallNanoseconds)) replay_wall_us \(us(m.replayWallNanoseconds))"
                + " device_us \(us(m.deviceNanoseconds))")
        }
    }
}

extension Malvvm.Bench.GPU {
    struct Transfer: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "A guest blob's way to GPU memory and back: through staging against zero-copy.",
            discussion: """
            The path a discrete GPU takes (buffers the host cannot map; forced on a device that \
            could): a blob in shared pages, in 4 KiB pieces as a guest's pages are, uploaded, \
            doubled and downloaded in one batch, through staging (host memcpy both ways) \
            alternating with the same batch on a backend that imported the pages \
            (VK_EXT_external_memory_host: device copies only). One line per size:
              transfer bytes 1048576 staged_copy_us ... zero_copy_copy_us ... staged_wall_us ... \
            zero_copy_wall_us ... wall_ratio ... staged_device_us ... zero_copy_device_us ...
            """)

        @Option(help: ArgumentHelp("Blob sizes in KiB, comma-separated.", valueName: "kib,..."))
        var sizes = "64,1024,16384"

        @Option(help: ArgumentHelp("Batches timed each way per size.", valueName: "n"))
        var rounds = 20

        func parsedSizes() throws -> [Int] {
            let values = sizes.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard !values.isEmpty, values.allSatisfy({ $0.map { (4 ... 1 << 20).contains($0) } ?? false }) else {
                throw ValidationError("bad --sizes \(sizes): KiB from 4 to 1048576, comma-separated")
            }
            return values.compactMap { $0 }
        }

        func validate() throws {
            _ = try parsedSizes()
            guard (1 ... 10000).contains(rounds) else { throw ValidationError("bad --rounds \(rounds) (1...10000)") }
        }

        func run() throws {
            for kib in try parsedSizes() {
                Malvvm.Bench.GPU.progress("transfer: \(kib) KiB, \(rounds) batches each way")
                let measured = try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in
                    try TransferBenchmark.measure(bytes: kib << 10, rounds: rounds)
                }
                guard let m = measured else {
                    throw RuntimeFailure(message: "the Vulkan device cannot import host memory (no VK_EXT_external_memory_host)")
                }
                func us(_ nanoseconds: Double?) -> String { nanoseconds.map { fixed($0 / 1000, 1) } ?? "-" }
                print("transfer bytes \(m.bytes) staged_copy_us \(us(m.stagedHostCopyNanoseconds))"
                    + " zero_copy_copy_us \(us(m.zeroCopyHostCopyNanoseconds))"
                    + " staged_wall_us \(us(m.stagedWallNanoseconds)) zero_copy_wall_us \(us(m.zeroCopyWallNanoseconds))"
                    + " wall_ratio \(fixed(m.stagedWallNanoseconds / max(m.zeroCopyWallNanoseconds, 1), 2))"
                    + " staged_device_us \(us(m.stagedDeviceNanoseconds)) zero_copy_device_us \(us(m.zeroCopyDeviceNanoseconds))")
                fflush(nil)
            }
        }
    }
}

extension Malvvm.Bench.GPU {
    struct LearnedSlice: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "learned-slice",
            abstract: "Short batches mixed with long ones: learned-slice against equal share with a fixed slice.",
            discussion: """
            One client trains (batches about 8 time slices long, resubmitted back to back) while \
            three send one-kernel batches with 0.5-2.5 ms of think time, under equal share; the \
            trainer's VM selects the MLaaS service learned-slice (liblearned-slice.so beside the \
            binary) in alternate rounds. Prints one table (the medians \
            over rounds, and their ratio) and, with --json, writes the rounds.
            """)

        @Option(help: ArgumentHelp("The physical GPU: a Vulkan device index or name, 'cpu' for the CPU reference (default: the best Vulkan device).",
                                   valueName: "gpu"))
        var gpu: GPUArgument = GPUArgument(selector: .automatic)

        @Option(help: ArgumentHelp("Seconds measured per round.", valueName: "s"))
        var seconds = 3.0

        @Option(help: ArgumentHelp("Rounds per mode (the modes alternate).", valueName: "n"))
        var rounds = 3

        @Option(help: ArgumentHelp("Also write the measurement here as JSON.", valueName: "path"))
        var json: String?

        func validate() throws {
            guard seconds.isFinite, (0.2 ... 600).contains(seconds) else { throw ValidationError("bad --seconds \(seconds) (0.2...600)") }
            guard (1 ... 100).contains(rounds) else { throw ValidationError("bad --rounds \(rounds) (1...100)") }
        }

        func run() throws {
            let backend: any ComputeBackend
            do { backend = try BackendFactory.make(gpu.selector) } catch {
                throw RuntimeFailure(message: "no GPU: \(error)")
            }
            Malvvm.Bench.GPU.progress("learned-slice on \(backend.device.name): \(rounds) rounds of \(seconds) s per mode")
            let m = try Malvvm.Bench.GPU.measuring { () throws(GPUBenchmarkError) in
                try LearnedSliceBenchmark.measure(on: backend, seconds: seconds, rounds: rounds,
                                                  attachModel: { scheduler, vm in
                                                      try SchedulerServiceAttachment.attach(service: "learned-slice", vm: vm, to: scheduler)
                                                  },
                                                  progress: { Malvvm.Bench.GPU.progress($0) })
            }
            func us(_ nanoseconds: Double) -> String { fixed(nanoseconds / 1000, 0) }
            print("learned-slice: 1 trainer (\(m.trainerKernels) kernels a batch, \(fixed(m.trainerBatchSlices, 1)) slices of "
                + "\(m.timeSliceNanoseconds / 1000) µs) + 3 small clients, equal share, \(backend.device.name), "
                + "median of \(rounds) rounds")
            var table = TextTable(header: ["policy", "small p50 µs", "small p99 µs", "trainer batches/s", "trainer share/entitled",
                                           "overruns/slice", "Jain"],
                                  rightAligned: Set(1 ... 6))
            for learned in [false, true] {
                table.append([learned ? "learned-slice" : "fixed slice", us(m.smallP50(learned: learned)),
                              us(m.smallP99(learned: learned)), fixed(m.trainerThroughput(learned: learned), 1),
                              fixed(m.trainerShareOfEntitlement(learned: learned), 3),
                              fixed(m.overrunsPerSlice(learned: learned), 2), fixed(m.jain(learned: learned), 4)])
            }
            table.append(["fixed / learned", fixed(m.smallP50(learned: false) / m.smallP50(learned: true), 2),
                          fixed(m.smallP99(learned: false) / m.smallP99(learned: true), 2),
                          fixed(m.trainerThroughput(learned: false) / m.trainerThroughput(learned: true), 2), "", "", ""])
            print(table.render())
            if let json {
                try writeJSON(m, device: backend.device.name, to: json)
            }
        }

        private func writeJSON(_ m: LearnedSliceBenchmark.Measurement, device: String, to path: String) throws {
            let rounds: [[String: Any]] = m.rounds.map { r in
                ["learned": r.learned, "small_queueing_p50_ns": r.smallQueueingP50Nanoseconds,
                 "small_queueing_p99_ns": r.smallQueueingP99Nanoseconds, "small_batches": r.smallBatches,
                 "trainer_batches_per_s": r.trainerBatchesPerSecond, "trainer_slices": r.trainerSlices,
                 "trainer_slice_overruns": r.trainerSliceOverruns, "pieces_per_batch": r.piecesPerBatch,
                 "jain": r.jain, "trainer_share_of_entitlement": r.trainerShareOfEntitlement, "utilisation": r.utilisation]
            }
            let report: [String: Any] = [
                "device": device, "seconds_per_round": seconds, "rounds_per_mode": self.rounds,
                "trainer_kernels": m.trainerKernels, "trainer_batch_slices": m.trainerBatchSlices,
                "time_slice_ns": m.timeSliceNanoseconds, "rounds": rounds,
                "small_p99_ratio": m.smallP99(learned: false) / m.smallP99(learned: true),
                "jain_fixed": m.jain(learned: false), "jain_learned": m.jain(learned: true),
            ]
            do {
                let data = try JSONSerialization.data(withJSONObject: report, options: [.prettyPrinted, .sortedKeys])
                try data.write(to: URL(fileURLWithPath: path))
            } catch {
                throw RuntimeFailure(message: "cannot write \(path): \(error)")
            }
        }
    }
}

/// `value` with `digits` decimals.
private func fixed(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
