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
            abstract: "Run a guest training job natively: test=train's MLP (default) or test=cnn's CNN (--job cnn), with the same data, seed, model, kernels and batches, through GPUHost's scheduler.",
            discussion: """
            Prints the guest's per-epoch lines ('train: epoch N loss X train-acc Y% test-acc Z% time T ms'), \
            'train: final test accuracy Z%', and a 'bench:' summary with total seconds, train images/s and GPU \
            utilisation (the scheduler's busy/wall). stdout is the guest's own output line for line (a failed \
            job ends in 'train: FAIL', as the guest's does); a failure also says why on stderr, in one \
            'malvvm: error:' line, and exits 70 (the guest exits 1: malvvm's own codes stay above a guest's). \
            Exits 0 when the test accuracy reaches 95 %. scripts/bench-vgpu compares it with the same job in a VM.

            --job cnn runs test=cnn's job instead (issue #17's preprocessing-heavy CNN on mnist.img; its \
            preprocessing on --workers host threads, as a PyTorch DataLoader's workers): 'cnn: epoch N loss X \
            test-acc Z% time T ms' per epoch, a 'cnn: result:' line as the guest's, a 'bench:' summary with \
            the host CPU time spent preprocessing and GPU utilisation, 'cnn: PASS' at 97 % (exit 70 below). \
            scripts/bench-mlaas compares it with the two VM forms.
            """
        )

        @Option(name: .long, help: ArgumentHelp("The physical GPU: a Vulkan device index or name, 'cpu' for the CPU reference (default: the best Vulkan device).",
                                                valueName: "gpu"))
        var gpu: GPUArgument = GPUArgument(selector: .automatic)

        @Option(name: .long, help: ArgumentHelp("The job: 'mlp' (test=train) or 'cnn' (test=cnn).", valueName: "job"))
        var job: Job = .mlp

        @Option(name: .long, help: ArgumentHelp("The dataset image (scripts/make-dataset; default: the job's, digits.img or mnist.img).",
                                                valueName: "path"))
        var dataset: String?

        @Option(name: .long, help: ArgumentHelp("Epochs (1..1000; default 20 for mlp, \(MNISTCNN.defaultEpochs) for cnn).", valueName: "n"))
        var epochs: Int?

        @Option(name: .long, help: ArgumentHelp("cnn: train records used (64..4000).", valueName: "n"))
        var records: Int = 4000

        @Option(name: .long, help: ArgumentHelp("cnn: the shuffle and augmentation seed.", valueName: "n"))
        var seed: UInt64 = 42

        @Option(name: .long, help: ArgumentHelp("cnn: preprocessing worker threads (1..64).", valueName: "n"))
        var workers: Int = 2

        @Option(name: .long, help: ArgumentHelp("cnn: the test accuracy (percent) the job must reach to pass.", valueName: "percent"))
        var pass: Double = MNISTCNN.passPercent

        @Option(name: .long, help: ArgumentHelp("Mini-batch size (1..256).", valueName: "n"))
        var batch: Int = 32

        @OptionGroup var global: GlobalOptions

        enum Job: String, ExpressibleByArgument, CaseIterable {
            case mlp, cnn
        }

        func validate() throws {
            if let epochs { guard (1 ... 1000).contains(epochs) else { throw ValidationError("bad --epochs \(epochs) (1..1000)") } }
            guard (1 ... 256).contains(batch) else { throw ValidationError("bad --batch \(batch) (1..256)") }
            guard (0 ... 100).contains(pass) else { throw ValidationError("bad --pass \(pass) (0..100)") }
            guard (1 ... 64).contains(workers) else { throw ValidationError("bad --workers \(workers) (1..64)") }
            guard (MNISTCNN.batchSize ... 4000).contains(records) else {
                throw ValidationError("bad --records \(records) (\(MNISTCNN.batchSize)..4000)")
            }
        }

        func run() throws {
            global.bootstrapLogging()
            if job == .cnn { return try runCNN() }
            let epochs = self.epochs ?? 20
            let data: DigitsDataset
            do { data = try DigitsDataset.load(path: dataset ?? "Guest/build/digits.img") } catch {
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
