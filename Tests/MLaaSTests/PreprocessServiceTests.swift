import CMLaaS
import Foundation
import Glibc
@testable import MLaaS
import Testing

/// The preprocess module's ABI-2 side without a vGPU: destinations, requests and disable as the
/// real libpreprocess.so answers them, and the `gpu` table's decoding of a service's kernels.
/// (The GPU pipeline itself runs end to end in MalvvmCLITests.PreprocessGuestTests.)
@Suite struct PreprocessServiceTests {
    let registry = ServiceRegistry(directory: ModuleDirectory(Modules.shared))
    static let next: [UInt8] = [1, 0, 0, 0, 0, 0, 0, 0]

    func attached() throws -> (ServiceBinding, String) {
        try registry.load(service: "preprocess")
        let disk = try Modules.dataset(records: 10, bytesPerImage: 16)
        let binding = try registry.attach(service: "preprocess",
                                          vm: try VMDescription.grantingWholeDisks(name: "pp", paths: [disk]))
        return (binding, disk)
    }

    func refusal(_ body: () throws(MLaaSError) -> Void) -> String? {
        guard case let .refused(service, reason)? = mlaasError(body), service == "preprocess" else { return nil }
        return reason
    }

    @Test func aDestinationIsAllThreeKeysOrNone() throws {
        let (binding, disk) = try attached()
        defer { registry.unloadAll(); unlink(disk) }
        let reason = refusal { () throws(MLaaSError) in try binding.configure("disk=0,records=10,image=4x4x1,batch=5,context=1,images=2") }
        #expect(reason?.contains("context, images and labels go together") == true, "\(reason ?? "accepted")")
        let same = refusal { () throws(MLaaSError) in
            try binding.configure("disk=0,records=10,image=4x4x1,batch=5,context=1,images=2,labels=2")
        }
        #expect(same?.contains("images and labels must be different resources") == true, "\(same ?? "accepted")")
    }

    @Test func aDestinationNeedsTheVGPUTheEnableCameThrough() throws {
        let (binding, disk) = try attached()
        defer { registry.unloadAll(); unlink(disk) }
        // No vGPU bound (a configure from the API, not a guest's enable): nothing can run.
        let reason = refusal { () throws(MLaaSError) in
            try binding.configure("disk=0,records=10,image=4x4x1,batch=5,context=1,images=2,labels=3")
        }
        #expect(reason == "bad destination: images resource 2 cannot be reached: the enable did not come through a vGPU",
                "\(reason ?? "accepted")")
    }

    @Test func requestsNeedARunningPipelineAndAKnownOp() throws {
        let (binding, disk) = try attached()
        defer { registry.unloadAll(); unlink(disk) }
        try binding.configure("disk=0,records=10,image=4x4x1,batch=5")
        let idle = refusal { () throws(MLaaSError) in _ = try binding.request(Self.next, capacity: 32) }
        #expect(idle?.contains("no pipeline is running") == true, "\(idle ?? "answered")")
        let op = refusal { () throws(MLaaSError) in _ = try binding.request([7, 0, 0, 0, 0, 0, 0, 0], capacity: 32) }
        #expect(op?.contains("unknown request op 7") == true, "\(op ?? "answered")")
        let short = refusal { () throws(MLaaSError) in _ = try binding.request([1, 0, 0, 0], capacity: 32) }
        #expect(short?.contains("a request is 8 bytes") == true, "\(short ?? "answered")")
        try binding.disable()
        let after = refusal { () throws(MLaaSError) in _ = try binding.request(Self.next, capacity: 32) }
        #expect(after?.contains("no pipeline is running") == true, "\(after ?? "answered")")
        // Unloaded: every call is the registry's error, not the service's.
        registry.unloadAll()
        #expect(mlaasError { () throws(MLaaSError) in _ = try binding.request(Self.next, capacity: 32) }
            == .serviceUnloaded(service: "preprocess", vm: "pp"))
    }

    static func kernel(_ op: malv_mlaas_gpu_op, _ shape: (inout malv_mlaas_gpu_kernel) -> Void = { _ in }) -> malv_mlaas_gpu_kernel {
        var k = malv_mlaas_gpu_kernel()
        k.op = op.rawValue
        k.input = malv_mlaas_gpu_buffer(kind: MALV_MLAAS_GPU_SCRATCH, id: 1, offset: 0, length: 64)
        k.output = malv_mlaas_gpu_buffer(kind: MALV_MLAAS_GPU_RESOURCE, id: 2, offset: 64, length: 64)
        shape(&k)
        return k
    }

    @Test func aServicesKernelsAreReadFieldByField() throws {
        let crop = try ServiceGPUDecoding.kernel(Self.kernel(MALV_MLAAS_GPU_CROP) { k in
            (k.batch, k.channels, k.height, k.width, k.top, k.left, k.out_height, k.out_width) = (1, 1, 4, 4, 0, 1, 4, 4)
            (k.padding, k.pad_value) = (1, -0.5)
        }, index: 0)
        #expect(crop == .crop(batch: 1, channels: 1, height: 4, width: 4, top: 0, left: 1, outHeight: 4, outWidth: 4, padding: 1,
                              padValue: -0.5, offsets: nil, input: ServiceGPUBuffer(kind: .scratch, id: 1, offset: 0, length: 64),
                              output: ServiceGPUBuffer(kind: .resource, id: 2, offset: 64, length: 64)))
        let normalize = try ServiceGPUDecoding.kernel(Self.kernel(MALV_MLAAS_GPU_NORMALIZE_U8) { k in
            (k.batch, k.channels, k.height, k.width, k.scale) = (1, 2, 4, 2, 0.5)
            k.mean = (1, 2, 0, 0)
            k.std = (3, 4, 0, 0)
        }, index: 0)
        guard case let .normalizeU8(_, _, _, channels, _, mean, std, _, _) = normalize else { Issue.record("\(normalize)"); return }
        #expect(channels == 2 && mean == [1, 2] && std == [3, 4])
    }

    @Test func aMalformedKernelIsRefusedWithItsReason() {
        let cases: [(String, (inout malv_mlaas_gpu_kernel) -> Void, String)] = [
            ("unknown op", { k in k.op = 9 }, "unknown op 9"),
            ("a field the op does not use", { k in k.padding = 1 }, "does not use is not 0"),
            ("a mean beyond the channels", { k in
                k.op = MALV_MLAAS_GPU_NORMALIZE_U8.rawValue; k.channels = 1; k.mean = (0, 5, 0, 0) }, "does not use is not 0"),
            ("a buffer kind", { k in k.input.kind = 3 }, "kind 3 is neither scratch"),
            ("an empty buffer", { k in k.output.length = 0 }, "output is empty"),
            ("offsets on a COPY", { k in k.offsets = malv_mlaas_gpu_buffer(kind: MALV_MLAAS_GPU_SCRATCH, id: 1, offset: 0, length: 12) },
             "only CROP takes offsets"),
        ]
        for (what, spoil, reason) in cases {
            var k = Self.kernel(MALV_MLAAS_GPU_COPY)
            spoil(&k)
            do {
                let decoded = try ServiceGPUDecoding.kernel(k, index: 3)
                Issue.record("\(what): accepted as \(decoded)")
            } catch {
                #expect(error.status == MALV_MLAAS_E_INVALID && error.message.hasPrefix("kernel 3") && error.message.contains(reason),
                        "\(what): \(error.message)")
            }
        }
    }
}
