import Foundation
import Testing

/// Issue #17's preprocessing-heavy CNN job (Guest/tests/cnn.c, docs/mlaas.md "The CNN job") in
/// its three forms, short: 768 train records (12 batches of 64), one epoch, on the CPU backend,
/// where every form computes the same values. The guest preprocessing on its vCPU, the guest with
/// `preprocess` offloaded and `malvvm bench native --job cnn` train on the same batches with the
/// same kernels, so their loss and accuracy lines must be equal to the last printed digit — a
/// batch, a kernel or a gradient that differed anywhere shows here — and the accuracy must clear
/// a bar that only a CNN that learns reaches (12 steps: chance is 10 %; seed 42 reaches 53.8 %).
/// 768 records rather than the first model's 1,024: the 16/32-channel model costs ~5x the
/// 6/12 one per image, and the test runs on the CPU backend in CI.
@Suite(.serialized) struct CNNJobTests {
    static let dataset = Harness.packageRoot.appendingPathComponent("Guest/build/mnist.img").path
    static let short = "cnn_records=768 cnn_epochs=1 cnn_pass=40"

    static func vm(_ form: String, modules: String) throws -> Harness.Result {
        try Harness.malvvm(["run", "--kernel", Harness.guest, "--memory", "512M", "--vgpu", "2g", "--gpu", "cpu",
                            "--disk", dataset + ",readonly", "--api-socket", "none", "--mlaas-dir", modules,
                            "--mlaas", "preprocess", "--cmdline", "test=cnn cnn_pp=\(form) \(short)"], timeout: 300)
    }

    /// The epoch lines without their times.
    static func epochs(_ output: String) -> [String] {
        output.split(separator: "\n").filter { $0.hasPrefix("cnn: epoch ") }.map { line in
            String(line[..<(line.range(of: " time ")?.lowerBound ?? line.endIndex)])
        }
    }

    static func accuracy(_ output: String) -> Double? {
        let line = output.split(separator: "\n").first { $0.hasPrefix("cnn: result: test-acc ") }
        return line.flatMap { Double($0.dropFirst("cnn: result: test-acc ".count).prefix { $0 != "%" }) }
    }

    @Test func theThreeFormsTrainIdenticallyAndLearn() throws {
        let modules = try MLaaSCommandTests.ModuleDirectory()
        let guest = try Self.vm("guest", modules: modules.path)
        let host = try Self.vm("host", modules: modules.path)
        let native = try Harness.malvvm(["bench", "native", "--job", "cnn", "--gpu", "cpu", "--records", "768", "--epochs", "1",
                                         "--pass", "40", "--dataset", Self.dataset], timeout: 300)
        for (form, result) in [("guest", guest), ("host", host), ("native", native)] {
            #expect(result.status == 0, "\(form): \(result.stdout.suffix(1500)) \(result.stderr.suffix(800))")
            #expect(Self.epochs(result.stdout).count == 1, "\(form): \(result.stdout.suffix(1500))")
            #expect(result.stdout.contains("cnn: PASS"), "\(form)")
        }
        #expect(guest.stdout.contains("preprocessing on the guest vCPU"))
        #expect(host.stdout.contains("preprocessing on the host (MLaaS preprocess)"))
        #expect(Self.epochs(guest.stdout) == Self.epochs(host.stdout), "\(Self.epochs(guest.stdout)) \(Self.epochs(host.stdout))")
        #expect(Self.epochs(native.stdout) == Self.epochs(guest.stdout), "\(Self.epochs(native.stdout)) \(Self.epochs(guest.stdout))")
        let accuracy = try #require(Self.accuracy(guest.stdout))
        #expect(accuracy >= 40, "\(accuracy)")
    }

    @Test func withoutThePreprocessServiceTheOffloadedFormSaysWhy() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--memory", "512M", "--vgpu", "2g", "--gpu", "cpu",
                                         "--disk", Self.dataset + ",readonly", "--api-socket", "none",
                                         "--cmdline", "test=cnn cnn_pp=host \(Self.short)"], timeout: 120)
        #expect(result.status == 1, "\(result.stdout.suffix(800))")
        #expect(result.stdout.contains("cnn: FAIL"), "\(result.stdout.suffix(800))")
    }

    @Test func badOptionsAreOneLine() throws {
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--memory", "512M", "--vgpu", "2g", "--gpu", "cpu",
                                         "--disk", Self.dataset + ",readonly", "--api-socket", "none",
                                         "--cmdline", "test=cnn cnn_pp=gpu"], timeout: 120)
        #expect(result.status == 2, "\(result.stdout.suffix(800))")
        #expect(result.stdout.contains("cnn: bad cnn_pp 'gpu' (guest or host)"))
    }
}
