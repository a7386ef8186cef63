@testable import VGPUCore
import Platform
import Foundation
import GPUHost
@testable import Hypervisor
import Synchronization
import Testing
import VirtioGPU

/// The test guest's `test=hotplug` on real KVM in this process, with vGPUs attached and detached
/// through `Machine` while its vCPU runs: the host side of PCIe native hot-plug end to end.
@Suite(.serialized) struct HotplugGuestTests {
    static let guest = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Guest/build/malvguest.elf").path

    /// The guest's console, line by line, and a way to wait for a line.
    final class Console: Sendable {
        private let state = Mutex<(text: String, ended: Bool)>(("", false))
        var writer: ConsoleWriter {
            ConsoleWriter { chunk in self.state.withLock { $0.text += String(decoding: chunk, as: UTF8.self) } }
        }
        var text: String { state.withLock { $0.text } }
        func end() { state.withLock { $0.ended = true } }

        /// Waits until the console holds `needle` `count` times; false if the VM ended first or
        /// the time ran out.
        func waitFor(_ needle: String, count: Int = 1, seconds: Double = 120) -> Bool {
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                let (text, ended) = state.withLock { ($0.text, $0.ended) }
                if text.components(separatedBy: needle).count - 1 >= count { return true }
                if ended { return false }
                usleep(2000)
            }
            return false
        }
    }

    /// Boots `test=hotplug` with `options` on its own thread.
    final class RunningGuest: @unchecked Sendable {
        let machine: Machine
        let console = Console()
        final class ExitBox: Sendable { let value = Mutex<Result<MachineExit, HypervisorError>?>(nil) }
        private let exit = ExitBox()
        private var thread: NativeThread?

        init(options: String) throws {
            machine = try Machine(configuration: MachineConfiguration(
                kernelPath: HotplugGuestTests.guest, commandLine: "test=hotplug " + options, memorySize: 256 << 20),
                                  console: console.writer)
            let machine = self.machine, console = self.console, exit = self.exit
            thread = try NativeThread {
                let result: Result<MachineExit, HypervisorError>
                do throws(HypervisorError) { result = .success(try machine.run()) } catch { result = .failure(error) }
                exit.value.withLock { $0 = result }
                console.end()
            }
        }

        /// Waits for the VM to end; stops it first if it is still running after `seconds`.
        func finish(seconds: Double = 60) -> MachineExit? {
            _ = console.waitFor("\u{0}never", seconds: seconds)
            machine.requestStop(.stopped(signal: 0))
            thread?.join()
            thread = nil
            return try? exit.value.withLock { $0 }?.get()
        }
    }

    let scheduler: GPUScheduler
    let profile = VGPUProfile(name: "test", memoryBytes: 64 << 20)

    init() throws {
        scheduler = try GPUScheduler(backend: CPUBackend())
    }

    /// A para-vGPU on `scheduler`, hot-plugged into the first free slot.
    func hotplugVGPU(into machine: Machine, name: String) throws -> (slot: HotplugSlotID, device: VirtioGPU) {
        let device = VirtioGPU(scheduler: scheduler, profile: profile, memory: machine.memory, name: name)
        return (try machine.addVirtioDevice(device, name: name, placement: .hotplugSlot).slot!, device)
    }

    @Test func aVGPUArrivesIsUsedAndLeavesTwiceWhileTheGuestRuns() throws {
        defer { scheduler.stop() }
        let guest = try RunningGuest(options: "hotplug_cycles=2 hotplug_timeout_ms=60000")
        for cycle in 1...2 {
            #expect(guest.console.waitFor("hotplug: waiting for a device (cycle \(cycle)"), "\(guest.console.text)")
            let (slot, gpu) = try hotplugVGPU(into: guest.machine, name: "vgpu-hot")
            #expect(slot == HotplugSlotID(1))  // the first free slot, again after the detach
            #expect(gpu.name == "vgpu-hot")
            #expect(guest.console.waitFor("hotplug: vgpu in use", count: cycle), "\(guest.console.text)")
            let listed = try #require(guest.machine.hotpluggedDevices.first)
            #expect(listed.slot == slot && listed.name == "vgpu-hot" && listed.virtioType == 16)
            #expect(listed.address == "01:00.0" && listed.powered && !listed.detaching)
            #expect(!scheduler.clientIDs.isEmpty)  // the guest's context
            try guest.machine.hotUnplug(slot, timeout: .seconds(30))
            #expect(guest.machine.hotpluggedDevices.isEmpty)
            #expect(scheduler.clientIDs.isEmpty)
            // A second detach of the same device is refused, in one line.
            #expect(throws: HypervisorError.self) { try guest.machine.hotUnplug(slot, timeout: .seconds(1)) }
        }
        #expect(guest.finish() == .guestExit(code: 0), "\(guest.console.text)")
        let text = guest.console.text
        #expect(text.contains("hotplug: port 00:1c.0 slot 1 -> bus 01"))
        #expect(text.contains("hotplug: 01:00.0 1af4:1050 class 03:80 display controller"))
        #expect(text.contains("(inside the port's window)"))
        #expect(text.contains("hotplug: vgpu sgemm 16x24x32 + relu ... ok"))
        #expect(text.contains("hotplug: slot 1: attention button pressed; releasing the device"))
        #expect(text.contains("hotplug: slot 1 empty (events PDC DLLSC); 01:00.0 vendor reads 0xffff"))
        #expect(text.contains("hotplug: PASS (2 cycles)"))
    }

    /// A guest that never lets go: the detach times out with a clear error and the device stays;
    /// forced, it is pulled (surprise removal), its GPU work and scheduler client go with it,
    /// and the guest carries on.
    @Test func aGuestThatKeepsTheDeviceGetsASurpriseRemovalOnlyWhenForced() throws {
        defer { scheduler.stop() }
        let guest = try RunningGuest(options: "hotplug_release=ignore hotplug_timeout_ms=60000")
        #expect(guest.console.waitFor("hotplug: waiting for a device"), "\(guest.console.text)")
        let (slot, _) = try hotplugVGPU(into: guest.machine, name: "vgpu-stuck")
        #expect(guest.console.waitFor("hotplug: vgpu in use"), "\(guest.console.text)")
        #expect(throws: HypervisorError.self) { try guest.machine.hotUnplug(slot, timeout: .milliseconds(200)) }
        do throws(HypervisorError) { try guest.machine.hotUnplug(slot, timeout: .milliseconds(200)) } catch {
            guard case .hotplug(.guestDidNotRelease(slot, _)) = error else {
                Issue.record("unexpected error \(error)")
                return
            }
            #expect(error.description.contains("did not release"))
        }
        #expect(guest.machine.hotpluggedDevices.map(\.name) == ["vgpu-stuck"])
        #expect(!scheduler.clientIDs.isEmpty)
        try guest.machine.hotUnplug(named: "vgpu-stuck", timeout: .milliseconds(200), force: true)
        #expect(guest.machine.hotpluggedDevices.isEmpty)
        #expect(scheduler.clientIDs.isEmpty)
        #expect(guest.finish() == .guestExit(code: 0), "\(guest.console.text)")
        #expect(guest.console.text.contains("hotplug: slot 1: surprise removal"))
        #expect(guest.console.text.contains("hotplug: PASS (1 cycle)"))
    }
}
