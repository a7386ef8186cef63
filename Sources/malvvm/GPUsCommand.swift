import ArgumentParser
import GPUHost

extension Malvvm {
    struct GPUs: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "gpus",
            abstract: "List this host's GPUs: Vulkan devices, DRM render nodes and PCI display controllers, matched up.",
            discussion: """
            Each row is one GPU as the sources that see it report it: its Vulkan device (driver, \
            memory), DRM node, and PCI function with its kernel driver, IOMMU group and whether \
            vfio-pci holds it (the precondition for PCI passthrough). Sources that find nothing \
            say so below the table.
            """
        )

        @OptionGroup var global: GlobalOptions

        func run() throws {
            global.bootstrapLogging()
            let table = GPUInventory.discover().renderTable()
            print(table, terminator: table.hasSuffix("\n") ? "" : "\n")
            // The driver's own utilisation and memory, as nvidia-smi shows them.
            switch NVML.open() {
            case let .success(nvml):
                for reading in nvml.read() { print("\(reading.summary) (driver \(nvml.driverVersion))") }
            case let .failure(unavailable):
                print(unavailable.description)
            }
        }
    }
}
