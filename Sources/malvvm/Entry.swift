import ArgumentParser
import Glibc

/// The process entry: parse, run, and map every failure to one line on stderr and an exit code
/// (`MalvvmExit`), never a trap or a backtrace.
@main
enum Entry {
    static func main() async {
        do {
            var command = try Malvvm.parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch let failure as RuntimeFailure {
            Terminal.error(failure.message)
            exit(MalvvmExit.failure)
        } catch let exitCode as ExitCode {
            exit(exitCode.rawValue)
        } catch {
            // Help and --version are "errors" with a success code: let ArgumentParser print them.
            let code = Malvvm.exitCode(for: error)
            guard code != .success else { Malvvm.exit(withError: error) }
            var message = Malvvm.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid usage"
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            // ArgumentParser says EX_USAGE for what it could not parse or validate; anything
            // else a command threw is a failure while running.
            guard code == .validationFailure else {
                Terminal.error(message)
                exit(MalvvmExit.failure)
            }
            Terminal.error("\(message) (see 'malvvm --help')")
            exit(MalvvmExit.usage)
        }
    }
}

/// malvvm's exit codes. A guest's own code (`malvvm run`) passes through when it is 0...63, so
/// malvvm's own outcomes sit above that range (sysexits.h's numbers) and can never be taken for
/// a guest's; a guest code ≥ 64 is reported as 63 (its exact value is on stderr and in the
/// `--metrics` file). 128+N: stopped by signal N.
enum MalvvmExit {
    /// The highest guest code that passes through unchanged; higher ones exit with it.
    static let guestCodeLimit: Int32 = 63
    /// EX_USAGE: a command-line mistake.
    static let usage: Int32 = 64
    /// EX_SOFTWARE: malvvm failed while running (no /dev/kvm, a missing file, a refused API call).
    static let failure: Int32 = 70
    /// EX_OSERR: the guest cannot go on (triple fault, KVM internal error; registers printed).
    static let guestFault: Int32 = 71

    /// The process's exit status for the guest's debug-exit value.
    static func status(forGuestCode code: UInt32) -> Int32 {
        code <= UInt32(guestCodeLimit) ? Int32(code) : guestCodeLimit
    }
}

/// A failure while running (not a usage mistake): exit code 70.
struct RuntimeFailure: Error {
    let message: String
}

enum Terminal {
    static func error(_ message: String) {
        FileHandleWriter.standardError.write("malvvm: error: \(message)\n")
    }

    static func note(_ message: String) {
        FileHandleWriter.standardError.write("malvvm: \(message)\n")
    }
}

enum FileHandleWriter {
    case standardError

    func write(_ text: String) {
        var bytes = Array(text.utf8)
        _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
    }
}
