import Foundation
import Hypervisor

/// `--cpu-template NAME|FILE.json`: a built-in template by name, else a custom template file in
/// Firecracker's format (`cpuid_modifiers`: leaf and subleaf as hex strings, `modifiers` of a
/// register and a 0b/0/1/x bitmap). MSR modifiers are refused rather than ignored.
enum CPUTemplateArgument {
    static func parse(_ text: String) throws(CPUTemplateError) -> CPUTemplate {
        if let builtIn = CPUTemplate.named(text) { return builtIn }
        guard text.hasSuffix(".json") || FileManager.default.fileExists(atPath: text) else { throw .unknown(text) }
        guard let data = FileManager.default.contents(atPath: text) else { throw .badFile(path: text, "cannot be read") }
        func fail(_ why: String) -> CPUTemplateError { .badFile(path: text, why) }
        guard let root = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw fail("not a JSON object")
        }
        if let msrs = root["msr_modifiers"] as? [Any], !msrs.isEmpty { throw fail("msr_modifiers are not supported") }
        guard let leaves = root["cpuid_modifiers"] as? [[String: Any]] else { throw fail("no cpuid_modifiers list") }
        func number(_ value: Any?, _ what: String) throws(CPUTemplateError) -> UInt32 {
            if let integer = value as? Int, let result = UInt32(exactly: integer) { return result }
            if let string = value as? String {
                let digits = string.hasPrefix("0x") ? String(string.dropFirst(2)) : string
                if let result = UInt32(digits, radix: string.hasPrefix("0x") ? 16 : 10) { return result }
            }
            throw fail("\(what) must be a number or a \"0x…\" string")
        }
        var modifiers: [CPUIDModifier] = []
        for (index, leaf) in leaves.enumerated() {
            let leafNumber = try number(leaf["leaf"], "cpuid_modifiers[\(index)].leaf")
            let subleaf = leaf["subleaf"] == nil ? 0 : try number(leaf["subleaf"], "cpuid_modifiers[\(index)].subleaf")
            guard let registers = leaf["modifiers"] as? [[String: Any]] else {
                throw fail("cpuid_modifiers[\(index)] has no modifiers list")
            }
            for register in registers {
                guard let name = register["register"] as? String,
                      let which = CPUIDModifier.Register(rawValue: name.lowercased()) else {
                    throw fail("cpuid_modifiers[\(index)]: register must be eax, ebx, ecx or edx")
                }
                guard let bitmap = register["bitmap"] as? String else { throw fail("cpuid_modifiers[\(index)]: no bitmap") }
                do {
                    modifiers.append(try CPUIDModifier(leaf: leafNumber, subleaf: subleaf, register: which, bitmap: bitmap))
                } catch { throw fail("cpuid_modifiers[\(index)]: \(error)") }
            }
        }
        return CPUTemplate(name: text, modifiers: modifiers)
    }
}
