extension GPUDaemonStatus {
    /// The daemon's status as Prometheus text: `malvvm_gpud_*` for the daemon and its
    /// scheduler's window, `malvvm_gpud_vgpu_*` per connected vGPU (`vm`, `vgpu`, `profile`),
    /// `malvvm_gpud_client_*` per scheduler client, `malvvm_gpu_nvml_*` for the GPU's own
    /// reading where NVML exists. docs/api/gpud.yaml lists them.
    public var prometheusText: String {
        let page = PrometheusPage()
        let daemon = [("gpu", gpu), ("policy", policy)]
        page.gauge("malvvm_gpud_uptime_seconds", "Seconds since the daemon started", uptimeSeconds, labels: daemon)
        page.gauge("malvvm_gpud_window_seconds", "The measuring window (since start or PUT /v1/metrics/reset)", windowSeconds,
                   labels: daemon)
        page.gauge("malvvm_gpud_utilisation", "GPU time charged / wall time in the window", utilisation, labels: daemon)
        page.gauge("malvvm_gpud_jain_index", "Jain's index over measured/target share of the clients that asked for time",
                   jainIndex, labels: daemon)
        page.gauge("malvvm_gpud_max_share_error", "Largest |measured - target| share of a client", maxShareError, labels: daemon)
        page.gauge("malvvm_gpud_queueing_p99_seconds", "99th percentile of a batch's wait for the GPU", queueingP99Milliseconds / 1e3,
                   labels: daemon)
        if let dispatchBusy {
            page.gauge("malvvm_gpud_dispatch_busy", "Fraction of the window the dispatching thread was busy", dispatchBusy, labels: daemon)
        }
        if let retireBusy {
            page.gauge("malvvm_gpud_retire_busy", "Fraction of the window the retiring thread was busy", retireBusy, labels: daemon)
        }
        page.gauge("malvvm_gpud_vgpus", "vGPUs connected", vgpus.count, labels: daemon)
        page.counter("malvvm_gpud_departures_total", "vGPUs whose VMs went away (the latest are kept)", departures.count,
                     labels: daemon)
        for vgpu in vgpus {
            let labels = [("vm", vgpu.vm), ("vgpu", vgpu.vgpu), ("profile", vgpu.profile.name)]
            page.gauge("malvvm_gpud_vgpu_active", "1 while the vGPU's guest driver has it running", vgpu.active ? 1 : 0, labels: labels)
            page.counter("malvvm_gpud_vgpu_submissions_total", "Submissions since the vGPU connected", vgpu.submissions, labels: labels)
            page.counter("malvvm_gpud_vgpu_gpu_seconds_total", "GPU time charged since the vGPU connected", vgpu.gpuMilliseconds / 1e3,
                         labels: labels)
            page.gauge("malvvm_gpud_vgpu_measured_share", "Its contexts' part of the GPU time in the window", vgpu.measuredShare,
                       labels: labels)
            page.gauge("malvvm_gpud_vgpu_target_share", "What a perfect scheduler would have given it in the window", vgpu.targetShare,
                       labels: labels)
        }
        for client in clients {
            let labels = [("client", "\(client.id)"), ("name", client.name)]
            page.gauge("malvvm_gpud_client_weight", "The client's scheduling weight", client.weight, labels: labels)
            page.gauge("malvvm_gpud_client_entitled_share", "The share the policy entitles it to", client.entitledShare, labels: labels)
            page.gauge("malvvm_gpud_client_measured_share", "Its part of the GPU time in the window", client.measuredShare,
                       labels: labels)
            page.counter("malvvm_gpud_client_gpu_seconds_total", "GPU time charged to the client", client.gpuMilliseconds / 1e3,
                         labels: labels)
            page.counter("malvvm_gpud_client_batches_total", "Batches the client ran", client.batches, labels: labels)
            page.gauge("malvvm_gpud_client_queued_batches", "Batches waiting for the GPU", client.queuedBatches, labels: labels)
            page.gauge("malvvm_gpud_client_queueing_p99_seconds", "99th percentile of its batches' wait",
                       client.queueingP99Milliseconds / 1e3, labels: labels)
            page.gauge("malvvm_gpud_client_memory_in_use_bytes", "GPU memory the client holds", client.memoryInUseBytes, labels: labels)
        }
        if let nvml {
            let labels = [("gpu", "\(nvml.index)"), ("name", nvml.name)]
            page.gauge("malvvm_gpu_nvml_utilisation_percent", "NVML: percent of the last sample period a kernel was running",
                       nvml.gpuUtilisationPercent, labels: labels)
            page.gauge("malvvm_gpu_nvml_memory_utilisation_percent", "NVML: percent of the period device memory was busy",
                       nvml.memoryUtilisationPercent, labels: labels)
            page.gauge("malvvm_gpu_nvml_memory_used_bytes", "NVML: device memory used", nvml.memoryUsedBytes, labels: labels)
            page.gauge("malvvm_gpu_nvml_memory_total_bytes", "NVML: device memory", nvml.memoryTotalBytes, labels: labels)
        }
        return page.text
    }
}
