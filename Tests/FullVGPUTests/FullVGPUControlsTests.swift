@testable import FullVGPU
import Testing

/// The full-vGPU's G-VMCS controls as `--vgpu kind=full` sets them, and the register map the
/// guest driver and docs/fullvgpu.md agree on.
@Suite struct FullVGPUControlsTests {
    @Test func everyControlParsesOnAndOffAndRefusesTheRest() {
        for key in FullVGPUControls.keys {
            var controls = FullVGPUControls()
            let on = controls.set(key, "on"), off = controls.set(key, "OFF"), one = controls.set(key, "1")
            let maybe = controls.set(key, "maybe")
            #expect(on && off && one, "\(key)")
            #expect(!maybe, "\(key) took 'maybe'")
        }
        var controls = FullVGPUControls()
        let unknown = controls.set("no-such-control", "on")
        #expect(!unknown)
        #expect(FullVGPUControls() == FullVGPUControls(doorbellExiting: false, mmioBitmap: true, nestedPaging: true,
                                                      postedCompletions: true), "the defaults are the proposed hardware")
    }

    @Test func registersAreAlignedDistinctAndInsideThePage() {
        let offsets = FullVGPURegister.allCases.map(\.rawValue)
        #expect(Set(offsets).count == offsets.count, "two registers share an offset")
        #expect(offsets.allSatisfy { $0 % 4 == 0 && $0 < 4096 })
        // Every register the hypervisor must see when the MMIO bitmap is on is one the guest
        // writes, not one only the device changes (those are read from the register page).
        #expect(Set(FullVGPURegister.trappedWrites).isDisjoint(with: [.ringHead, .completedFence, .completedFenceHigh]))
    }
}
