import Foundation
import Testing

/// `--cpu-template`: built-in names and Firecracker-style files reach a ring-0 guest's cpuid;
/// an unknown name or a file that does not parse is one line and exit 64.
@Suite struct CPUTemplateCLITests {
    /// mov eax, 1 ; cpuid ; mov eax, ecx ; shr eax, 13 ; and eax, 1 ; out 0xf4, eax: exits with CX16.
    static let exitWithCX16: [UInt8] = [0xb8, 1, 0, 0, 0, 0x0f, 0xa2, 0x89, 0xc8, 0xc1, 0xe8, 0x0d, 0x83, 0xe0, 0x01,
                                        0xe7, 0xf4, 0xf4]
    static let clearCX16 = "0b" + String(repeating: "x", count: 18) + "0" + String(repeating: "x", count: 13)

    static func file(_ text: String) throws -> String {
        let path = NSTemporaryDirectory() + "malvvm-template-\(getpid())-\(UInt32.random(in: 0 ... .max)).json"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    func cx16(template: String?) throws -> Harness.Result {
        let kernel = try TinyKernel(code: Self.exitWithCX16)
        defer { kernel.remove() }
        return try Harness.malvvm(["run", "--kernel", kernel.path, "--api-socket", "none"]
            + (template.map { ["--cpu-template", $0] } ?? []))
    }

    @Test func builtInAndFileTemplatesHideCX16() throws {
        let json = """
        {"cpuid_modifiers": [{"leaf": "0x1", "subleaf": "0x0", "flags": 0,
                              "modifiers": [{"register": "ecx", "bitmap": "\(Self.clearCX16)"}]}],
         "msr_modifiers": []}
        """
        let path = try Self.file(json)
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(try cx16(template: "no-cx16-xsave").status == 0)
        #expect(try cx16(template: path).status == 0)
        let host = try cx16(template: "host").status
        #expect(host == 0 || host == 1)
        #expect(try cx16(template: nil).status == host, "host is the default")
    }

    static let mistakes: [(String, String)] = [
        ("pentium", "unknown CPU template 'pentium'; built in: host, no-cx16-xsave, or a FILE.json"),
        ("[1, 2]", "not a JSON object"),
        (#"{"cpuid_modifiers": [{"leaf": "0x1", "modifiers": [{"register": "ecx", "bitmap": "0b12"}]}]}"#, "bad CPUID bitmap"),
        (#"{"cpuid_modifiers": [{"leaf": "0x1", "modifiers": [{"register": "esp", "bitmap": "0b1"}]}]}"#, "register must be eax, ebx, ecx or edx"),
        (#"{"cpuid_modifiers": [], "msr_modifiers": [{"addr": "0x10a", "bitmap": "0b0"}]}"#, "msr_modifiers are not supported"),
    ]

    @Test(arguments: mistakes.indices)
    func aTemplateThatDoesNotParseIsAUsageError(index: Int) throws {
        let (text, message) = Self.mistakes[index]
        let argument = index == 0 ? text : try Self.file(text)
        defer { if index > 0 { try? FileManager.default.removeItem(atPath: argument) } }
        let result = try Harness.malvvm(["run", "--kernel", Harness.guest, "--cpu-template", argument, "--api-socket", "none"])
        #expect(result.status == MalvvmExit.usage, "\(result.stderr)")
        #expect(result.stderrLines.count == 1 && result.stderr.contains(message), "\(result.stderr)")
    }
}
