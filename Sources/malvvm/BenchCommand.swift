import ArgumentParser
import Glibc
import GPUHost
import MLWorkloads

extension Malvvm {
    struct Bench: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Benchmarks that run without a VM: the native training job, GPUHost against direct Vulkan.",
            subcommands: [Native.self, GPU.self]
        )
    }
}

extension Malvvm.Bench {
    struct Native: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the guest's test=train job natively: the same data, seed, model, kernels and batches, through GPUHost's scheduler.",
            discussion: """
            Prints the guest's per-epoch lines ('train: epoch N loss X train-acc Y% test-acc Z% time T ms'), \
            'train: final test accuracy Z%', and a 'bench:' summary with total seconds, train images/s and GPU \
            utilisation (the scheduler's busy/wall). stdout is the guest's own output line for line (a failed \
            job ends in 'train: FAIL', as the guest's does); a failure also says why on stderr, in one \
            'malvvm: error:' line, and exits 70 (the guest exits 1: malvvm's own codes stay above a guest's). \
            Exits 0 when the test accuracy reaches 95 %. scripts/bench-vgpu compares it with the same job in a VM.
            """
        )

        @Option(name: .long, help: ArgumentHelp("The physical GPU: a Vulkan device index or name, 'cpu' for the CPU reference (default: the best Vulkan device).",
                                                valueName: "gpu"))
        var gpu: GPUArgument = GPUArgument(selector: .automatic)

        @Option(name: .long, help: ArgumentHelp("The digits image (scripts/make-dataset).", valueName: "path"))
        var dataset: String = "Guest/build/digits.img"

        @Option(name: .long, help: ArgumentHelp("Epochs (1..1000).", valueName: "n"))
        var epochs: Int = 20

        @Option(name: .long, help: ArgumentHelp("Mini-batch size (1..256).", valueName: "n"))
        var batch: Int = 32

        @OptionGroup var global: GlobalOptions

        func validate() throws {
            guard (1 ... 1000).contains(epochs) else { throw ValidationError("bad --epochs \(epochs) (1..1000)") }
            guard (1 ... 256).contains(batch) else { throw ValidationError("bad --batch \(batch) (1..256)") }
        }

        func run() throws {
            global.bootstrapLogging()
            let data: DigitsDataset
            do { data = try DigitsDataset.load(path: dataset) } catch {
                throw failed(error.description)
            }
            print("train: \(data.summary)")
            let scheduler: GPUScheduler
            do { scheduler = try GPUScheduler(backend: try BackendFactory.make(gpu.selector)) } catch {
                throw RuntimeFailure(message: "GPU: \(error)")
            }
            defer { scheduler.stop() }
            // The GPU's own busy measure beside the scheduler's, where the NVIDIA driver is.
            let nvml = NVMLRun.start()
            let summary: DigitsMLP.Summary
            do {
                let job = try DigitsMLP(dataset: data, scheduler: scheduler, batchSize: batch, epochs: epochs)
                let backend = scheduler.backend.kind == .vulkan ? "vulkan" : "cpu"
                print("train: backend \(backend) (\(scheduler.backend.device.name)), native; MLP \(DigitsMLP.inputs)-\(DigitsMLP.hidden)-\(DigitsMLP.outputs) "
                      + "(\(DigitsMLP.parameterCount) parameters), batch \(batch), \(job.stepsPerEpoch) steps/epoch, \(epochs) epochs, "
                      + "SGD lr \(format("%.3f", Double(DigitsMLP.learningRate))) momentum \(format("%.2f", Double(DigitsMLP.momentum)))")
                summary = try job.train { e in
                    print("train: epoch \(e.index) loss \(format("%.4f", e.meanLoss)) train-acc \(format("%.2f", e.trainAccuracy))% "
                          + "test-acc \(format("%.2f", e.testAccuracy))% time \(e.nanoseconds / 1_000_000) ms")
                    fflush(nil)
                }
            } catch {
                throw failed(error.description)
            }
            let seconds = Double(summary.totalNanoseconds) / 1e9
            print("train: \(summary.submissions) submissions (\(summary.commands) commands) in \(summary.totalNanoseconds / 1_000_000) ms, "
                  + "\(format("%.0f", summary.trainImagesPerSecond)) train images/s "
                  + "(\(format("%.0f", summary.imagesPerSecondWithEvaluation)) images/s counting evaluation)")
            print("train: final test accuracy \(format("%.2f", summary.finalTestAccuracy))%")
            print("bench: native total \(format("%.3f", seconds)) s, \(format("%.0f", summary.trainImagesPerSecond)) train images/s, "
                  + "GPU utilisation \(format("%.1f", summary.gpuUtilisation * 100))% "
                  + "(busy \(summary.gpuBusyNanoseconds / 1_000_000) ms of \(summary.gpuWindowNanoseconds / 1_000_000) ms)")
            nvml.finish().lines.forEach { print($0) }
            guard summary.passed else {
                throw failed(nil, because: "final test accuracy \(format("%.2f", summary.finalTestAccuracy))% is below 95%")
            }
            print("train: PASS")
            fflush(nil)
        }

        /// The job failed: its lines on stdout as the guest prints them (`line` first, if any,
        /// then 'train: FAIL'), and the reason as a runtime failure (stderr, exit 70).
        func failed(_ line: String?, because reason: String? = nil) -> RuntimeFailure {
            if let line { print("train: \(line)") }
            print("train: FAIL")
            fflush(nil)
            return RuntimeFailure(message: "bench native: \(reason ?? line ?? "the job failed")")
        }
    }
}

/// printf-style formatting of one Double without Foundation.
func format(_ spec: String, _ value: Double) -> String {
    var buffer = [CChar](repeating: 0, count: 64)
    _ = withVaList([value]) { args in vsnprintf(&buffer, buffer.count, spec, args) }
    let length = buffer.firstIndex(of: 0) ?? buffer.count
    return String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}
