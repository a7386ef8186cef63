import Foundation
import Testing

/// `malvvm bench gpu` as scripts/bench-gpu and scripts/gpu-check drive it: their parsers read
/// these exact formats, so a change here must change them too.
@Suite struct BenchGPUCommandTests {
    @Test func planListsEveryKernelCaseAsRawDispatches() throws {
        let path = NSTemporaryDirectory() + "malvvm-plan-\(getpid()).txt"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let result = try Harness.malvvm(["bench", "gpu", "plan", path])
        #expect(result.status == 0, "\(result.stderr)")
        let plan = try String(contentsOfFile: path, encoding: .utf8)
        let cases = plan.split(separator: "\n").filter { $0.hasPrefix("case ") }.map { $0.split(separator: " ")[1] }
        #expect(cases.contains("sgemm_512") && cases.contains("conv2d_8x16x32x32_k32_3x3") && cases.count == 8, "\(cases)")
        #expect(plan.split(separator: "\n").filter { $0 == "end" }.count == cases.count)
        #expect(plan.contains("\ndispatch "))
    }

    @Test func gemmPrintsOneKeyValueLinePerSize() throws {
        let result = try Harness.malvvm(["bench", "gpu", "gemm", "--sizes", "64", "--seconds", "0.05"])
        #expect(result.status == 0, "\(result.stderr)")
        let line = result.stdoutLines.first { $0.hasPrefix("gemm 64 ") } ?? ""
        let fields = line.split(separator: " ").map(String.init)
        // gemm SIZE then key/value pairs.
        let pairs = Dictionary(stride(from: 2, to: fields.count - 1, by: 2).map { (fields[$0], fields[$0 + 1]) },
                               uniquingKeysWith: { first, _ in first })
        #expect(Double(pairs["ours_tflops"] ?? "") ?? 0 > 0, "\(line)")
        #expect(Int(pairs["iterations"] ?? "") ?? 0 >= 1, "\(line)")
        #expect(pairs["variant"] != nil && pairs["timing"] != nil, "\(line)")
    }

    @Test func replayPrintsRecordedAgainstReplayedSubmitTime() throws {
        let result = try Harness.malvvm(["bench", "gpu", "replay", "--steps", "3", "--rounds", "3"])
        #expect(result.status == 0, "\(result.stderr)")
        let line = result.stdoutLines.first { $0.hasPrefix("replay kernels ") } ?? ""
        let fields = line.split(separator: " ").map(String.init)
        let pairs = Dictionary(stride(from: 1, to: fields.count - 1, by: 2).map { (fields[$0], fields[$0 + 1]) },
                               uniquingKeysWith: { first, _ in first })
        #expect(pairs["kernels"] == "45", "\(line)")
        for key in ["record_submit_us", "replay_submit_us", "submit_ratio", "record_wall_us", "replay_wall_us"] {
            #expect(Double(pairs[key] ?? "") ?? 0 > 0, "\(key) in \(line)")
        }
    }

    @Test func transferPrintsStagedAgainstZeroCopyPerSize() throws {
        let result = try Harness.malvvm(["bench", "gpu", "transfer", "--sizes", "16,64", "--rounds", "2"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdoutLines.filter { $0.hasPrefix("transfer bytes ") }
        #expect(lines.count == 2, "\(result.stdout)")
        for (line, bytes) in zip(lines, ["16384", "65536"]) {
            let fields = line.split(separator: " ").map(String.init)
            let pairs = Dictionary(stride(from: 1, to: fields.count - 1, by: 2).map { (fields[$0], fields[$0 + 1]) },
                                   uniquingKeysWith: { first, _ in first })
            #expect(pairs["bytes"] == bytes, "\(line)")
            for key in ["staged_copy_us", "staged_wall_us", "zero_copy_wall_us", "wall_ratio"] {
                #expect(Double(pairs[key] ?? "") ?? 0 > 0, "\(key) in \(line)")
            }
            // The staged batch copies on the host; the zero-copy one does not copy at all.
            #expect(Double(pairs["zero_copy_copy_us"] ?? "") ?? .infinity < Double(pairs["staged_copy_us"] ?? "") ?? 0, "\(line)")
        }
    }

    @Test func learnedSlicePrintsBothPoliciesAndWritesTheRounds() throws {
        let json = FileManager.default.temporaryDirectory.appendingPathComponent("learned-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: json) }
        let result = try Harness.malvvm(["bench", "gpu", "learned-slice", "--gpu", "cpu", "--seconds", "0.5", "--rounds", "1",
                                         "--json", json], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        for policy in ["fixed slice", "learned-slice", "fixed / learned"] {
            #expect(result.stdoutLines.contains { $0.hasPrefix(policy) }, "\(policy) in \(result.stdout)")
        }
        let report = (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json)))) as? [String: Any]
        let rounds = report?["rounds"] as? [[String: Any]] ?? []
        #expect(rounds.count == 2 && Set(rounds.compactMap { $0["learned"] as? Bool }) == [false, true], "\(String(describing: report))")
        // The learned rounds cut the trainer's batches; the fixed ones never do.
        for round in rounds {
            let pieces = round["pieces_per_batch"] as? Double ?? 0
            #expect((round["learned"] as? Bool == true) == (pieces > 1), "\(round)")
        }
    }

    @Test(arguments: [
        ["bench", "gpu", "learned-slice", "--seconds", "0"],
        ["bench", "gpu", "learned-slice", "--rounds", "0"],
        ["bench", "gpu", "transfer", "--sizes", "2"],
        ["bench", "gpu", "transfer", "--rounds", "0"],
        ["bench", "gpu", "replay", "--steps", "0"],
        ["bench", "gpu", "replay", "--rounds", "x"],
        ["bench", "gpu", "gemm", "--sizes", "0"],
        ["bench", "gpu", "gemm", "--sizes", "abc"],
        ["bench", "gpu", "run", "--json", "x.json"],
        ["bench", "gpu", "plan"],
    ])
    func usageMistakesAreOneLineAndExitUsage(arguments: [String]) throws {
        let result = try Harness.malvvm(arguments)
        #expect(result.status == MalvvmExit.usage, "\(arguments): \(result.stderr)")
        #expect(result.stderrLines.count == 1 && result.stderrLines[0].hasPrefix("malvvm: error: "), "\(result.stderr)")
    }
}
