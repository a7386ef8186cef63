/// What a GPU daemon does for the VMs it serves besides their vGPUs: the MLaaS services a VM
/// selected (`malvvm run --mlaas`) that act on what the daemon owns — learned-slice's model of
/// the VM's batches goes into the daemon's scheduler. Implemented by the daemon's process over
/// its service registry, so this module never sees one.
public protocol VGPUSessionServices: AnyObject, Sendable {
    /// A vGPU of VM `vm` connected, the VM having selected `selected`: the services that serve it
    /// in the daemon from now on (those loaded here; a VM's other services are its own process's).
    func vgpuConnected(vm: String, selected: [String]) -> [String]
    /// That vGPU disconnected, its scheduler clients gone: one call for every `vgpuConnected`.
    func vgpuDisconnected(vm: String)
}
