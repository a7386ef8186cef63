import Foundation
import Glibc
import Platform
import Synchronization

/// The GPU's own account of how busy it is, through NVIDIA's management library: what
/// `nvidia-smi` shows and what operators read (the seed's Figure 2 came from it).
///
/// `libnvidia-ml.so.1` ships with the NVIDIA driver, not with us: it is loaded at run time
/// (dlopen), so malvvm builds and runs where it does not exist and then says so
/// (`NVML.open()` returns the reason). The scheduler's busy time is ours; this is the
/// driver's "a kernel was running" percentage, sampled by the GPU itself.
public final class NVML: @unchecked Sendable {
    /// One device's reading.
    public struct Reading: Codable, Hashable, Sendable {
        public var index: Int
        public var name: String
        /// Percent of the last sample period (1/6 s to 1 s, the driver's choice) during
        /// which a kernel was running.
        public var gpuUtilisationPercent: Double
        /// Percent of that period during which device memory was read or written.
        public var memoryUtilisationPercent: Double
        public var memoryUsedBytes: UInt64
        public var memoryTotalBytes: UInt64

        /// One line, as `malvvm gpus` and `malvvm gpud status` print it.
        public var summary: String {
            "nvml: GPU \(index) \(name): busy \(Int(gpuUtilisationPercent)) %, memory busy \(Int(memoryUtilisationPercent)) %, "
                + "\(memoryUsedBytes >> 20) MiB of \(memoryTotalBytes >> 20) MiB used"
        }
    }

    /// Why NVML cannot be read here, in one line.
    public struct Unavailable: Error, CustomStringConvertible, Sendable {
        public let description: String
    }

    private typealias Init = @convention(c) () -> Int32
    private typealias Count = @convention(c) (UnsafeMutablePointer<UInt32>) -> Int32
    private typealias HandleByIndex = @convention(c) (UInt32, UnsafeMutablePointer<OpaquePointer?>) -> Int32
    private typealias Name = @convention(c) (OpaquePointer?, UnsafeMutablePointer<CChar>, UInt32) -> Int32
    private typealias Utilization = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt32>) -> Int32
    private typealias Memory = @convention(c) (OpaquePointer?, UnsafeMutablePointer<UInt64>) -> Int32
    private typealias DriverVersion = @convention(c) (UnsafeMutablePointer<CChar>, UInt32) -> Int32

    private let library: UnsafeMutableRawPointer
    private let devices: [(handle: OpaquePointer?, name: String)]
    private let utilization: Utilization
    private let memory: Memory
    /// The driver's version ("580.159"), as nvidia-smi prints it.
    public let driverVersion: String

    /// Loads NVML and opens every device it sees.
    public static func open() -> Result<NVML, Unavailable> {
        guard let library = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL) else {
            return .failure(Unavailable(description: "NVML: libnvidia-ml.so.1 not found (no NVIDIA driver on this host)"))
        }
        func symbol<T>(_ name: String, as _: T.Type) -> T? {
            dlsym(library, name).map { unsafeBitCast($0, to: T.self) }
        }
        guard let initialise = symbol("nvmlInit_v2", as: Init.self),
              let count = symbol("nvmlDeviceGetCount_v2", as: Count.self),
              let handle = symbol("nvmlDeviceGetHandleByIndex_v2", as: HandleByIndex.self),
              let name = symbol("nvmlDeviceGetName", as: Name.self),
              let utilization = symbol("nvmlDeviceGetUtilizationRates", as: Utilization.self),
              let memory = symbol("nvmlDeviceGetMemoryInfo", as: Memory.self),
              let driver = symbol("nvmlSystemGetDriverVersion", as: DriverVersion.self) else {
            dlclose(library)
            return .failure(Unavailable(description: "NVML: libnvidia-ml.so.1 lacks a function malvvm reads"))
        }
        let status = initialise()
        guard status == 0 else {
            dlclose(library)
            return .failure(Unavailable(description: "NVML: nvmlInit failed (NVML error \(status))"))
        }
        var deviceCount: UInt32 = 0
        _ = count(&deviceCount)
        var devices: [(OpaquePointer?, String)] = []
        for index in 0 ..< deviceCount {
            var device: OpaquePointer?
            guard handle(index, &device) == 0 else { continue }
            var buffer = [CChar](repeating: 0, count: 96)
            _ = name(device, &buffer, UInt32(buffer.count))
            devices.append((device, String(cString: buffer)))
        }
        var version = [CChar](repeating: 0, count: 80)
        _ = driver(&version, UInt32(version.count))
        return .success(NVML(library: library, devices: devices, utilization: utilization, memory: memory,
                             driverVersion: String(cString: version)))
    }

    private init(library: UnsafeMutableRawPointer, devices: [(handle: OpaquePointer?, name: String)],
                 utilization: @escaping Utilization, memory: @escaping Memory, driverVersion: String) {
        self.library = library
        self.devices = devices
        self.utilization = utilization
        self.memory = memory
        self.driverVersion = driverVersion
    }

    public var deviceNames: [String] { devices.map(\.name) }

    /// Every device's utilisation and memory now.
    public func read() -> [Reading] {
        devices.enumerated().compactMap { index, device in
            // nvmlUtilization_t { unsigned int gpu; unsigned int memory; }
            var rates: [UInt32] = [0, 0]
            // nvmlMemory_t { unsigned long long total; free; used; }
            var bytes: [UInt64] = [0, 0, 0]
            guard utilization(device.handle, &rates) == 0 else { return nil }
            _ = memory(device.handle, &bytes)
            return Reading(index: index, name: device.name, gpuUtilisationPercent: Double(rates[0]),
                           memoryUtilisationPercent: Double(rates[1]), memoryUsedBytes: bytes[2], memoryTotalBytes: bytes[0])
        }
    }
}

/// Samples NVML on a thread of its own while a run lasts, for the utilisation over the run
/// (`--metrics`, benchmarks): one reading is only the driver's last sample period.
public final class NVMLSampler: @unchecked Sendable {
    /// Mean and peak over the samples of one device.
    public struct Summary: Codable, Hashable, Sendable {
        public var name: String
        public var samples: Int
        public var meanGPUUtilisationPercent: Double
        public var peakGPUUtilisationPercent: Double
        public var meanMemoryUtilisationPercent: Double
        public var peakMemoryUsedBytes: UInt64
        public var memoryTotalBytes: UInt64
    }

    private let nvml: NVML
    private let interval: TimeInterval
    private let state = Mutex<(stopping: Bool, samples: [[NVML.Reading]])>((false, []))
    private let done = DispatchSemaphore(value: 0)

    public init(nvml: NVML, interval: TimeInterval = 0.1) {
        self.nvml = nvml
        self.interval = interval
        do {
            _ = try NativeThread(name: "nvml-sampler", detached: true) { [self] in
                while !state.withLock({ $0.stopping }) {
                    let reading = nvml.read()
                    state.withLock { $0.samples.append(reading) }
                    usleep(useconds_t(interval * 1e6))
                }
                done.signal()
            }
        } catch {
            // No thread, no samples: the summary comes back empty rather than wrong.
            done.signal()
        }
    }

    /// Ends sampling; one summary per device.
    public func stop() -> [Summary] {
        state.withLock { $0.stopping = true }
        done.wait()
        let samples = state.withLock { $0.samples }
        var byDevice: [Int: [NVML.Reading]] = [:]
        for reading in samples.joined() { byDevice[reading.index, default: []].append(reading) }
        return byDevice.keys.sorted().compactMap { index in
            guard let readings = byDevice[index], let first = readings.first else { return nil }
            let count = Double(readings.count)
            return Summary(name: first.name, samples: readings.count,
                           meanGPUUtilisationPercent: readings.map(\.gpuUtilisationPercent).reduce(0, +) / count,
                           peakGPUUtilisationPercent: readings.map(\.gpuUtilisationPercent).max() ?? 0,
                           meanMemoryUtilisationPercent: readings.map(\.memoryUtilisationPercent).reduce(0, +) / count,
                           peakMemoryUsedBytes: readings.map(\.memoryUsedBytes).max() ?? 0,
                           memoryTotalBytes: first.memoryTotalBytes)
        }
    }
}

/// What a run reports of NVML: the per-device summaries, or why there are none.
public struct NVMLReport: Codable, Hashable, Sendable {
    public var available: Bool
    /// Why NVML could not be read (nil when it was).
    public var reason: String?
    public var driverVersion: String?
    public var devices: [NVMLSampler.Summary]

    /// One line per device for a human ("nvml: NVIDIA H200 busy mean 91.2 %, peak 97 %, ...").
    public var lines: [String] {
        guard available else { return [reason ?? "NVML: not available"] }
        return devices.map { d in
            "nvml: \(d.name) busy mean \(String(format: "%.1f", d.meanGPUUtilisationPercent)) %, peak "
                + "\(String(format: "%.0f", d.peakGPUUtilisationPercent)) %, memory used peak \(d.peakMemoryUsedBytes >> 20) MiB of "
                + "\(d.memoryTotalBytes >> 20) MiB (\(d.samples) samples, driver \(driverVersion ?? "?"))"
        }
    }
}

/// What NVML says now: every device's reading, or why there is none (`malvvm gpus`).
public struct NVMLSnapshot: Codable, Hashable, Sendable {
    public var available: Bool
    /// Why NVML could not be read (nil when it was).
    public var reason: String?
    public var driverVersion: String?
    public var devices: [NVML.Reading]

    /// Opens NVML and reads every device once.
    public static func read() -> NVMLSnapshot {
        switch NVML.open() {
        case let .success(nvml):
            return NVMLSnapshot(available: true, reason: nil, driverVersion: nvml.driverVersion, devices: nvml.read())
        case let .failure(unavailable):
            return NVMLSnapshot(available: false, reason: unavailable.description, driverVersion: nil, devices: [])
        }
    }

    /// One line per device for a human (as nvidia-smi's summary), or the reason.
    public var lines: [String] {
        guard available else { return [reason ?? "NVML: not available"] }
        return devices.map { "\($0.summary) (driver \(driverVersion ?? "?"))" }
    }
}

/// A sampler over a run, or the reason there is none: `start()`, run, then `finish()`.
public struct NVMLRun: Sendable {
    private let sampler: NVMLSampler?
    private let driverVersion: String?
    private let reason: String?

    public static func start(interval: TimeInterval = 0.1) -> NVMLRun {
        switch NVML.open() {
        case let .success(nvml):
            return NVMLRun(sampler: NVMLSampler(nvml: nvml, interval: interval), driverVersion: nvml.driverVersion, reason: nil)
        case let .failure(unavailable):
            return NVMLRun(sampler: nil, driverVersion: nil, reason: unavailable.description)
        }
    }

    public func finish() -> NVMLReport {
        guard let sampler else { return NVMLReport(available: false, reason: reason, driverVersion: nil, devices: []) }
        return NVMLReport(available: true, reason: nil, driverVersion: driverVersion, devices: sampler.stop())
    }
}
