import Foundation
import FuzzSupport
@testable import ControlAPI

// REST bodies: the request bodies the APIs take, decoded by StrictJSON as the server does, then
// read the way the server reads them before anything happens: POST /v1/vgpus's attach request
// as a vGPU specification (what MachineController attaches), POST /v1/mlaas's load request.
// The input is the body.

func seeds() -> [[UInt8]] {
    [#"{"profile":"4g"}"#, #"{"profile":"2g","weight":2,"memory_bytes":536870912,"contexts":4}"#,
     #"{"profile":"2g","kind":"full"}"#, #"{"profile":"4g","kind":"full","doorbell_exiting":true,"mmio_bitmap":false}"#,
     #"{"profile":"1g","gpud":"/run/malvvm/gpud.sock"}"#, #"{"profile":"8g","kind":"para","gpud":"x","weight":1e308}"#,
     #"{"path":"libpreprocess.so"}"#].map { Array($0.utf8) }
}

Fuzz.main(seeds: seeds) { data in
    if let request = try? StrictJSON.decode(AttachVGPURequest.self, from: Data(data)) {
        _ = try? request.specification()
        _ = try? StrictJSON.encoder.encode(APIErrorBody(error: request.profile))
    }
    _ = try? StrictJSON.decode(LoadServiceRequest.self, from: Data(data))
}
