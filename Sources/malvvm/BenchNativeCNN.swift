import ArgumentParser
import Glibc
import GPUHost
import MLWorkloads

extension Malvvm.Bench.Native {
    /// `bench native --job cnn`: test=cnn's job as a host process. Its lines are the guest's
    /// (`cnn: epoch ...`, `cnn: result: ...`, `cnn: PASS`), so scripts/bench-mlaas reads the
    /// three forms with one parser.
    func runCNN() throws {
        let epochs = self.epochs ?? MNISTCNN.defaultEpochs
        let path = dataset ?? "Guest/build/mnist.img"
        let data: MNISTDataset
        do { data = try MNISTDataset.load(path: path) } catch {
            throw cnnFailed(error.description)
        }
        let scheduler: GPUScheduler
        do { scheduler = try GPUScheduler(backend: try BackendFactory.make(gpu.selector)) } catch {
            throw RuntimeFailure(message: "GPU: \(error)")
        }
        defer { scheduler.stop() }
        let nvml = NVMLRun.start()
        let summary: MNISTCNN.Summary
        do {
            let job = try MNISTCNN(dataset: data, scheduler: scheduler, records: records, epochs: epochs, seed: seed,
                                   workers: workers)
            let backend = scheduler.backend.kind == .vulkan ? "vulkan" : "cpu"
            let C = MNISTCNN.self
            print("cnn: backend \(backend) (\(scheduler.backend.device.name)), native, preprocessing on \(workers) host threads; "
                  + "\(records) train records (\(job.pipeline.batchesPerEpoch) batches of \(C.batchSize) an epoch), "
                  + "\(data.testCount) test, \(epochs) epochs, seed \(seed); resize \(C.resize)x\(C.resize), crop \(C.side)x\(C.side) "
                  + "padding \(C.padding), mean \(format("%.4f", Double(C.mean))) std \(format("%.4f", Double(C.std))); "
                  + "conv\(C.k1)-\(C.c1) pool, conv\(C.k2)-\(C.c2) pool, fc \(C.fcIn)-\(C.classes) (\(C.parameterCount) parameters)")
            fflush(nil)
            summary = try job.train { e in
                print("cnn: epoch \(e.index) loss \(format("%.4f", e.meanLoss)) test-acc \(format("%.2f", e.testAccuracy))% "
                      + "time \(e.nanoseconds / 1_000_000) ms")
                fflush(nil)
            }
        } catch {
            throw cnnFailed(error.description)
        }
        let ms = { (ns: UInt64) in ns / 1_000_000 }
        print("cnn: result: test-acc \(format("%.2f", summary.finalTestAccuracy))% train \(ms(summary.totalNanoseconds)) ms "
              + "vcpu-busy 0 ms preprocess \(ms(summary.preprocessNanoseconds)) ms (native) steps \(summary.steps) "
              + "images/s \(format("%.0f", summary.imagesPerSecond))")
        print("bench: native total \(format("%.3f", Double(summary.totalNanoseconds) / 1e9)) s, host CPU preprocessing "
              + "\(ms(summary.preprocessNanoseconds)) ms on \(workers) threads, waited \(ms(summary.loaderWaitNanoseconds)) ms "
              + "for batches, GPU utilisation \(format("%.1f", summary.gpuUtilisation * 100))% "
              + "(busy \(ms(summary.gpuBusyNanoseconds)) ms of \(ms(summary.gpuWindowNanoseconds)) ms)")
        nvml.finish().lines.forEach { print($0) }
        guard summary.finalTestAccuracy >= pass else {
            print("cnn: FAIL (test accuracy < \(format("%.0f", pass))%)")
            fflush(nil)
            throw RuntimeFailure(message: "bench native: final test accuracy \(format("%.2f", summary.finalTestAccuracy))% "
                                 + "is below \(format("%.0f", pass))%")
        }
        print("cnn: PASS (test accuracy >= \(format("%.0f", pass))%)")
        fflush(nil)
    }

    /// As `failed`, with the guest's `cnn:` prefix.
    func cnnFailed(_ line: String?, because reason: String? = nil) -> RuntimeFailure {
        if let line { print("cnn: \(line)") }
        print("cnn: FAIL")
        fflush(nil)
        return RuntimeFailure(message: "bench native: \(reason ?? line ?? "the job failed")")
    }
}
