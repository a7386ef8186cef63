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

        @Flag(name: .long, help: "Print the GPUs, the sources' notes and NVML's readings as one JSON object.")
        var json = false

        @OptionGroup var global: GlobalOptions

        /// `--json`: the inventory's fields (gpus, notes) and NVML's readings side by side.
        struct Report: Encodable {
            let inventory: GPUInventory
            let nvml: NVMLSnapshot

            enum CodingKeys: CodingKey { case nvml }

            func encode(to encoder: any Encoder) throws {
                try inventory.encode(to: encoder)
                var container = encoder.container(keyedBy: CodingKeys.self)
                try container.encode(nvml, forKey: .nvml)
            }
        }

        func run() throws {
            global.bootstrapLogging()
            let inventory = GPUInventory.discover()
            // The driver's own utilisation and memory, as nvidia-smi shows them.
            let nvml = NVMLSnapshot.read()
            if json { return try printJSON(Report(inventory: inventory, nvml: nvml)) }
            let table = inventory.renderTable()
            print(table, terminator: table.hasSuffix("\n") ? "" : "\n")
            nvml.lines.forEach { print($0) }
        }
    }
}
