import Foundation
import FuzzSupport
@testable import ControlAPI
import VGPUAssembly
import VGPUCore

// REST bodies: the one request body either API takes, POST /v1/vgpus's attach request
// (gpud's API has no request bodies: GET /status, PUT /metrics/reset), decoded by StrictJSON as
// the server does, then its fields read as a --vgpu specification the way MachineController
// does before anything is attached. The input is the body.

func seeds() -> [[UInt8]] {
    [#"{"profile":"4g"}"#, #"{"profile":"profile=4g,weight=2,memory=512m"}"#,
     #"{"profile":"2g","kind":"full"}"#, #"{"profile":"4g,doorbell-exiting=on,mmio-bitmap=off","kind":"full"}"#,
     #"{"profile":"1g","gpud":"/run/malvvm/gpud.sock"}"#, #"{"profile":"8g","kind":"para","gpud":"x"}"#].map { Array($0.utf8) }
}

Fuzz.main(seeds: seeds) { data in
    guard let request = try? StrictJSON.decode(AttachVGPURequest.self, from: Data(data)) else { return }
    var text = request.profile
    if let kind = request.kind { text += ",kind=\(kind)" }
    if let gpud = request.gpud { text += ",gpud=\(gpud)" }
    _ = try? VGPUSpecification(parsing: text, defaultDaemonSocket: "/tmp/gpud.sock")
    _ = try? VGPUProfile(parsing: request.profile)
    _ = try? VGPUProfile(definition: "fuzz:" + request.profile)
    _ = try? StrictJSON.encoder.encode(APIErrorBody(error: request.profile))
}
