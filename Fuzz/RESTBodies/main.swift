import Foundation
import FuzzSupport
@testable import ControlAPI
import MalvvmOpenAPI

// REST bodies: the request bodies the APIs take, decoded by the code generated from
// docs/api/malvvm.yaml as the server does, then read the way the server reads them before
// anything happens: POST /v1/vgpus's attach request
// as a vGPU specification (what MachineController attaches), POST /v1/mlaas's load request.
// The input is the body.

func seeds() -> [[UInt8]] {
    [#"{"profile":"4g"}"#, #"{"profile":"2g","weight":2,"memory_bytes":536870912,"contexts":4}"#,
     #"{"profile":"2g","kind":"full"}"#, #"{"profile":"4g","kind":"full","doorbell_exiting":true,"mmio_bitmap":false}"#,
     #"{"profile":"1g","gpud":"/run/malvvm/gpud.sock"}"#, #"{"profile":"8g","kind":"para","gpud":"x","weight":1e308}"#,
     #"{"path":"libpreprocess.so"}"#].map { Array($0.utf8) }
}

Fuzz.main(seeds: seeds) { data in
    do {
        let body = try JSONDecoder().decode(Components.Schemas.AttachVGPURequest.self, from: Data(data))
        let request: AttachVGPURequest = try APIWire.domain(body)
        _ = try? request.specification()
        _ = APIWire.errorBody(request.profile)
    } catch let error as DecodingError {
        _ = error.requestBodyMessage
    } catch {}
    if let body = try? JSONDecoder().decode(Components.Schemas.LoadServiceRequest.self, from: Data(data)) {
        let _: LoadServiceRequest? = try? APIWire.domain(body)
    }
}
