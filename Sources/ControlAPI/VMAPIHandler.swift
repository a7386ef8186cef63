import MalvvmOpenAPI
import OpenAPIRuntime

/// The VM control API (docs/api/malvvm.yaml): its generated `APIProtocol`, each operation a
/// call on the VM's `VMControl`. A failure is thrown as the `APIError` it is, which
/// `JSONErrorMiddleware` answers with its status and one line, whether or not the document
/// lists that status for the operation.
struct VMAPIHandler: APIProtocol {
    let control: any VMControl
    let version: APIVersion

    func getVersion(_ input: Operations.GetVersion.Input) async throws -> Operations.GetVersion.Output {
        .ok(.init(body: .json(try APIWire.generated(version))))
    }

    func getMetrics(_ input: Operations.GetMetrics.Input) async throws -> Operations.GetMetrics.Output {
        .ok(.init(body: .textPlainCharsetUtf8Version_0_0_4(HTTPBody(control.metrics().prometheusText))))
    }

    func getVM(_ input: Operations.GetVM.Input) async throws -> Operations.GetVM.Output {
        .ok(.init(body: .json(try APIWire.generated(control.info()))))
    }

    func pauseVM(_ input: Operations.PauseVM.Input) async throws -> Operations.PauseVM.Output {
        try control.pause()
        return .noContent(.init())
    }

    func resumeVM(_ input: Operations.ResumeVM.Input) async throws -> Operations.ResumeVM.Output {
        try control.resume()
        return .noContent(.init())
    }

    func shutdownVM(_ input: Operations.ShutdownVM.Input) async throws -> Operations.ShutdownVM.Output {
        try control.shutdown()
        return .noContent(.init())
    }

    func listVGPUs(_ input: Operations.ListVGPUs.Input) async throws -> Operations.ListVGPUs.Output {
        .ok(.init(body: .json(try APIWire.generated(control.vgpus()))))
    }

    func attachVGPU(_ input: Operations.AttachVGPU.Input) async throws -> Operations.AttachVGPU.Output {
        switch input.body {
        case let .json(body): .created(.init(body: .json(try APIWire.generated(try await control.attachVGPU(APIWire.domain(body))))))
        }
    }

    func getVGPU(_ input: Operations.GetVGPU.Input) async throws -> Operations.GetVGPU.Output {
        .ok(.init(body: .json(try APIWire.generated(control.vgpu(id: input.path.id)))))
    }

    func detachVGPU(_ input: Operations.DetachVGPU.Input) async throws -> Operations.DetachVGPU.Output {
        try await control.detachVGPU(id: input.path.id)
        return .noContent(.init())
    }

    func listServices(_ input: Operations.ListServices.Input) async throws -> Operations.ListServices.Output {
        .ok(.init(body: .json(try APIWire.generated(control.mlaas.services()))))
    }

    func loadService(_ input: Operations.LoadService.Input) async throws -> Operations.LoadService.Output {
        switch input.body {
        case let .json(body): .created(.init(body: .json(try APIWire.generated(try await control.mlaas.loadService(APIWire.domain(body))))))
        }
    }

    func unloadService(_ input: Operations.UnloadService.Input) async throws -> Operations.UnloadService.Output {
        try await control.mlaas.unloadService(name: input.path.name)
        return .noContent(.init())
    }
}
