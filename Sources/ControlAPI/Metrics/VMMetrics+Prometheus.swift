import VGPUCore

extension VMMetrics {
    /// The VM's counters as Prometheus text: `malvvm_vm_*` for the VM, `malvvm_kvm_statistic`
    /// for KVM's own, `malvvm_vmm_*` for exits that reached malvvm, `malvvm_scheduler_*` for the
    /// embedded GPU scheduler and `malvvm_vgpu_*` per vGPU (label `vgpu`, `kind`); every series
    /// carries `vm`. docs/api/malvvm.yaml lists them.
    public var prometheusText: String {
        let page = PrometheusPage()
        let vm = [("vm", name)]
        page.gauge("malvvm_vm_uptime_seconds", "Seconds since the VM started", uptimeSeconds, labels: vm)
        page.gauge("malvvm_vm_paused", "1 while the VM is paused", paused ? 1 : 0, labels: vm)
        page.gauge("malvvm_vm_vcpus", "Virtual CPUs", vcpus, labels: vm)
        for (statistic, value) in kvm.sorted(by: { $0.key < $1.key }) {
            page.gauge("malvvm_kvm_statistic", "KVM's binary statistics for the VM and the sum over its vCPUs, by name",
                       value, labels: vm + [("name", statistic)])
        }
        let exits: [(kind: String, key: String)] = [("port_io", "port_io_exits"), ("mmio", "mmio_exits"),
                                                    ("interrupted", "interrupted"), ("other", "other_exits")]
        for exit in exits {
            page.counter("malvvm_vmm_exits_total", "vCPU exits that reached malvvm, by kind", vmm[exit.key] ?? 0,
                         labels: vm + [("kind", exit.kind)])
        }
        for space in ["port", "mmio"] {
            page.counter("malvvm_vmm_unmapped_accesses_total", "Guest accesses to addresses no device claims",
                         vmm["unmapped_\(space)_accesses"] ?? 0, labels: vm + [("space", space)])
        }
        if let scheduler {
            let labels = vm + [("policy", scheduler.policy)]
            page.gauge("malvvm_scheduler_utilisation", "GPU time charged / wall time in the scheduler's window",
                       scheduler.utilisation, labels: labels)
            page.gauge("malvvm_scheduler_window_seconds", "The scheduler's measuring window", seconds(scheduler.windowNanoseconds),
                       labels: labels)
            page.gauge("malvvm_scheduler_busy_seconds", "GPU time charged in the window", seconds(scheduler.busyNanoseconds),
                       labels: labels)
        }
        for vgpu in vgpus {
            VGPUMetricsFamily.add(vgpu.statistics, labels: vm + [("vgpu", vgpu.name), ("kind", vgpu.kind)], to: page)
        }
        return page.text
    }
}

/// A vGPU's submission costs as `malvvm_vgpu_*` series: one family for every vGPU kind.
enum VGPUMetricsFamily {
    static func add(_ s: VGPUStatistics, labels: [(String, String)], to page: PrometheusPage) {
        page.counter("malvvm_vgpu_submissions_total", "Submissions run to completion", s.submissions, labels: labels)
        page.counter("malvvm_vgpu_refused_submissions_total", "Submissions refused before anything ran", s.refusedSubmissions,
                     labels: labels)
        page.counter("malvvm_vgpu_commands_total", "Compute commands in the submissions", s.commands, labels: labels)
        page.counter("malvvm_vgpu_stream_bytes_total", "Bytes of compute stream decoded", s.streamBytes, labels: labels)
        page.counter("malvvm_vgpu_decode_seconds_total", "Decoding, resolving and validating streams", seconds(s.decodeNanoseconds),
                     labels: labels)
        page.counter("malvvm_vgpu_decode_cache_hits_total", "Submissions whose stream was decoded before, taken from the cache",
                     s.decodeCacheHits, labels: labels)
        page.counter("malvvm_vgpu_upload_seconds_total", "Host copies of guest data towards the GPU", seconds(s.uploadNanoseconds),
                     labels: labels)
        page.counter("malvvm_vgpu_upload_bytes_total", "Guest bytes copied towards the GPU", s.uploadBytes, labels: labels)
        page.counter("malvvm_vgpu_download_seconds_total", "Host copies of results into guest memory",
                     seconds(s.downloadNanoseconds), labels: labels)
        page.counter("malvvm_vgpu_download_bytes_total", "Result bytes copied into guest memory", s.downloadBytes, labels: labels)
        page.counter("malvvm_vgpu_queueing_seconds_total", "Waiting in the scheduler's queue", seconds(s.queueingNanoseconds),
                     labels: labels)
        page.counter("malvvm_vgpu_gpu_seconds_total", "GPU time charged by the scheduler", seconds(s.gpuNanoseconds), labels: labels)
        page.counter("malvvm_vgpu_submit_seconds_total", "Lowering, recording and queueing batches once scheduled",
                     seconds(s.submitNanoseconds), labels: labels)
        page.counter("malvvm_vgpu_replayed_recordings_total", "Submissions that replayed an earlier command buffer",
                     s.replayedRecordings, labels: labels)
        page.counter("malvvm_vgpu_zero_copy_bytes_total", "Guest bytes the GPU copied in place, without a host copy",
                     s.zeroCopyBytes, labels: labels)
        page.counter("malvvm_vgpu_end_to_end_seconds_total", "Doorbell to response, summed over submissions",
                     seconds(s.endToEndNanoseconds), labels: labels)
        page.gauge("malvvm_vgpu_contexts", "Compute contexts alive", s.contexts, labels: labels)
        page.gauge("malvvm_vgpu_memory_in_use_bytes", "GPU memory the vGPU's contexts hold", s.memoryInUseBytes, labels: labels)
    }
}
