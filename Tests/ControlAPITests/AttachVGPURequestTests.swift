@testable import ControlAPI
import Foundation
import MalvvmOpenAPI
import Testing
import VGPUAssembly

/// `malvvm vgpu attach` turns its `--vgpu`-style spec into the API's JSON fields, and the VM
/// turns the fields back into the same specification, both through the type generated from
/// docs/api/malvvm.yaml, as the client and the server do.
@Suite struct AttachVGPURequestTests {
    @Test(arguments: ["4g", "profile=2g,weight=3", "memory=512m,contexts=4", "2g,kind=full,doorbell-exiting=on,nested-paging=off",
                      "profile=8g,gpud=/run/malvvm/gpud.sock"])
    func aSpecificationSurvivesTheWire(text: String) throws {
        let specification = try VGPUSpecification(parsing: text, defaultDaemonSocket: "/default.sock")
        let body = try JSONEncoder().encode(APIWire.generated(AttachVGPURequest(specification)) as Components.Schemas.AttachVGPURequest)
        let decoded: AttachVGPURequest = try APIWire.domain(JSONDecoder().decode(Components.Schemas.AttachVGPURequest.self, from: body))
        #expect(try decoded.specification() == specification, "\(String(decoding: body, as: UTF8.self))")
    }

    @Test func fieldsAreSnakeCaseAndOnlyTheOnesSet() throws {
        let request = AttachVGPURequest(try VGPUSpecification(parsing: "profile=2g,weight=3", defaultDaemonSocket: "/d"))
        let wire: Components.Schemas.AttachVGPURequest = try APIWire.generated(request)
        let object = try JSONSerialization.jsonObject(with: JSONEncoder().encode(wire)) as? [String: Any]
        #expect(Set(object?.keys.map { $0 } ?? []) == ["profile", "memory_bytes", "weight", "contexts"], "\(String(describing: object))")
        #expect(object?["weight"] as? Double == 3 && object?["memory_bytes"] as? Int == 2 << 30)
    }
}
