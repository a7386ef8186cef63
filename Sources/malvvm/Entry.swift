import ArgumentParser
import Glibc

/// The process entry: parse, run, and map every failure to one line on stderr and an exit code
/// (2 for a usage mistake, 1 for a runtime failure), never a trap or a backtrace.
@main
enum Entry {
    static func main() {
        do {
            var command = try Malvvm.parseAsRoot()
            try command.run()
        } catch let failure as RuntimeFailure {
            Terminal.error(failure.message)
            exit(1)
        } catch let exitCode as ExitCode {
            exit(exitCode.rawValue)
        } catch {
            // Help and --version are "errors" with a success code: let ArgumentParser print them.
            guard Malvvm.exitCode(for: error) != .success else { Malvvm.exit(withError: error) }
            var message = Malvvm.message(for: error).split(separator: "\n").first.map(String.init) ?? "invalid usage"
            if message.hasPrefix("Error: ") { message.removeFirst("Error: ".count) }
            Terminal.error("\(message) (see 'malvvm --help')")
            exit(2)
        }
    }
}

/// A failure while running (not a usage mistake): exit code 1.
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
