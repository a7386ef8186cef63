import GPUDaemonOpenAPI
import OpenAPIRuntime

/// The GPU daemon's API (docs/api/gpud.yaml): its generated `APIProtocol` over the daemon's
/// `GPUDaemonController`. Failures are thrown as `APIError`s, as in `VMAPIHandler`.
struct GPUDaemonAPIHandler: APIProtocol {
    let control: GPUDaemonController
    let version: APIVersion

    func getVersion(_ input: Operations.GetVersion.Input) async throws -> Operations.GetVersion.Output {
        .ok(.init(body: .json(try APIWire.generated(version))))
    }

    func getMetrics(_ input: Operations.GetMetrics.Input) async throws -> Operations.GetMetrics.Output {
        .ok(.init(body: .textPlainCharsetUtf8Version_0_0_4(HTTPBody(control.status().prometheusText))))
    }

    func getStatus(_ input: Operations.GetStatus.Input) async throws -> Operations.GetStatus.Output {
        .ok(.init(body: .json(try APIWire.generated(control.status()))))
    }

    func resetMetrics(_ input: Operations.ResetMetrics.Input) async throws -> Operations.ResetMetrics.Output {
        control.resetMetrics()
        return .noContent(.init())
    }

    // The MLaaS operations: the daemon's services, as VMAPIHandler serves a VM's.
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
