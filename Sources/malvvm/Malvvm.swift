import ArgumentParser
import Logging
import Platform

/// The root is async so that the API commands (ps, vm, vgpu, mlaas, gpud status) can await
/// their calls; the VM and the daemon themselves (run, gpud) stay synchronous commands.
struct Malvvm: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "malvvm",
        abstract: "A KVM virtual machine monitor for machine-learning guests that share one GPU.",
        version: MalvvmVersion.description,
        subcommands: [Run.self, GPUDaemonCommand.self, PS.self, VMCommand.self, VGPUCommand.self, MLaaSCommand.self, GPUs.self, Bench.self]
    )
}

/// Options every subcommand takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .warning

    func bootstrapLogging() {
        let level = logLevel
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}

/// The system-call filter's options (`run` and `gpud`; README, Hardening: confinement).
struct ConfinementOptions: ParsableArguments {
    @Flag(name: .long, help: "Run without the system-call filter that goes in after set-up (to debug with strace or gdb; README, Hardening: confinement).")
    var noSeccomp = false

    /// Makes one forbidden system call once the filter is in: how the tests see it work.
    @Flag(name: .long, help: .hidden)
    var seccompSelfTest = false

    /// Installs the filter (unless --no-seccomp): call once everything is set up.
    func confine() throws {
        guard !noSeccomp else { return }
        do { try SyscallFilter.confine(exitStatus: MalvvmExit.failure) } catch { throw RuntimeFailure(message: error.description) }
        if seccompSelfTest { SyscallFilter.makeForbiddenCall() }
    }
}
