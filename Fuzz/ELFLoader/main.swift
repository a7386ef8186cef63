import FuzzSupport
import Hypervisor

// The ELF/PVH kernel loader: the input is the kernel image (`--kernel`), parsed by ELFImage and
// loaded by PVHELFLoader into 8 MiB of guest RAM laid out as a VM's (the boot area below 1 MiB
// refused). Seeds: minimal ELF64 and ELF32 PVH kernels.

let memory = try! GuestMemory(layout: X86BootLayout.ramLayout(size: 8 << 20))

func seeds() -> [[UInt8]] {
    [minimalPVHELF(elf64: true), minimalPVHELF(elf64: false), minimalPVHELF(elf64: true, code: [UInt8](repeating: 0x90, count: 300))]
}

Fuzz.main(seeds: seeds) { data in
    guard let loader = try? PVHELFLoader(bytes: Array(data)) else { return }
    _ = try? loader.load(into: memory)
}
