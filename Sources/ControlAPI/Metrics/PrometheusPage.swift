import Prometheus

/// One scrape's page in the Prometheus text format (0.0.4), built through swift-prometheus's
/// registry: the values are read from the VM or the daemon at the moment of the scrape, so a
/// page is made fresh each time (a registry holds counters that only go up; ours are read
/// whole, cumulative since the process started, as Cloud Hypervisor's and DCGM's are).
/// (Its content type is the documents': the generated server sets it.)
struct PrometheusPage {
    private let registry = PrometheusCollectorRegistry()

    /// A count that only goes up while the process lives (`_total` by convention).
    func counter(_ name: String, _ help: String, _ value: some BinaryInteger, labels: [(String, String)] = []) {
        registry.makeCounter(name: name, labels: labels, help: help).increment(by: Int64(clamping: value))
    }

    /// A sum of time or another real quantity that only goes up.
    func counter(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = []) {
        registry.makeCounter(name: name, labels: labels, help: help).increment(by: value)
    }

    /// A value that goes up and down.
    func gauge(_ name: String, _ help: String, _ value: Double, labels: [(String, String)] = []) {
        registry.makeGauge(name: name, labels: labels, help: help).set(value)
    }

    func gauge(_ name: String, _ help: String, _ value: some BinaryInteger, labels: [(String, String)] = []) {
        gauge(name, help, Double(value), labels: labels)
    }

    var text: String { registry.emitToString() }
}

func seconds(_ nanoseconds: UInt64) -> Double { Double(nanoseconds) / 1e9 }
