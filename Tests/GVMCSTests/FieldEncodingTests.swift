import Testing
@testable import GVMCS

@Suite("Field encodings")
struct FieldEncodingTests {
    @Test("encoding packs access, index, type and width as SDM Appendix B")
    func layout() {
        let encoding = GVMCSFieldEncoding(width: .bits64, type: .guestState, index: 1, access: .high)
        #expect(encoding.rawValue == 0x2803)
        #expect(encoding.access == .high)
        #expect(encoding.index == 1)
        #expect(encoding.type == .guestState)
        #expect(encoding.width == .bits64)
        #expect(encoding.fullAccess.rawValue == 0x2802)
        #expect(GVMCSFieldEncoding(rawValue: 0x4402).description == "0x00004402")
    }

    @Test("every field's encoding is full access with clear reserved bits", arguments: GVMCSField.allCases)
    func wellFormed(field: GVMCSField) {
        let encoding = field.encoding
        #expect(encoding.access == .full)
        #expect(encoding.reservedBitsClear)
        #expect(GVMCSFieldEncoding(width: encoding.width, type: encoding.type,
                                   index: encoding.index) == encoding)
        #expect(GVMCSField.decode(encoding)! == (field, false))
    }

    @Test("exit information is exactly the read-only data type")
    func readOnlyFields() {
        let readOnly = Set(GVMCSField.allCases.filter(\.isReadOnly))
        #expect(readOnly == [.guestPhysicalAddress, .timeRun, .cumulativeTimeRun,
                             .cumulativePreemptionTime, .exitMMIOData, .instructionError,
                             .exitReason, .exitCompletionInformation, .exitCommandIndex,
                             .exitCommandOffset, .exitQualification, .guestGPUAddress])
    }

    @Test("VMX analogues keep VMX's encodings")
    func vmxAnalogues() {
        #expect(GVMCSField.instructionError.rawValue == 0x4400)
        #expect(GVMCSField.exitReason.rawValue == 0x4402)
        #expect(GVMCSField.exitCompletionInformation.rawValue == 0x4404)
        #expect(GVMCSField.exitQualification.rawValue == 0x6400)
        #expect(GVMCSField.guestPhysicalAddress.rawValue == 0x2400)
    }

    @Test("high access decodes only for 64-bit fields", arguments: GVMCSField.allCases)
    func highAccess(field: GVMCSField) {
        let high = GVMCSFieldEncoding(rawValue: field.rawValue | 1)
        if field.width == .bits64 {
            #expect(GVMCSField.decode(high)! == (field, true))
        } else {
            #expect(GVMCSField.decode(high) == nil)
        }
    }

    @Test("encodings with reserved bits or unknown indexes name nothing",
          arguments: [0x0000_1000 as UInt32, 0x0000_8000, 0x8000_4402, 0x0000_0002, 0x0000_4C02, 0x0000_6002])
    func unsupported(raw: UInt32) {
        #expect(GVMCSField.decode(GVMCSFieldEncoding(rawValue: raw)) == nil)
    }

    @Test("fields within one (width, type) group have distinct, dense indexes")
    func denseIndexes() {
        let groups = Dictionary(grouping: GVMCSField.allCases) {
            "\($0.encoding.width)-\($0.encoding.type)"
        }
        for (_, fields) in groups {
            let indexes = fields.map(\.encoding.index).sorted()
            #expect(indexes == Array(0..<UInt32(fields.count)))
        }
    }
}
