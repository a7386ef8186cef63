import Foundation
@testable import MLWorkloads
import Testing

/// The native baseline reads the same disk image the guest reads: the real one loads, and
/// every way an image can be wrong is one clear error, never a trap.
@Suite struct DigitsDatasetTests {
    static let image = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Guest/build/digits.img").path

    @Test func theRealImageLoadsWithItsSplitAndChecksum() throws {
        let data = try DigitsDataset.load(path: Self.image)
        #expect(data.trainCount == 1437 && data.testCount == 360)
        #expect(data.trainPixels.count == 1437 * 64 && data.testLabels.count == 360)
        #expect(data.trainLabels.allSatisfy { $0 < 10 } && data.trainPixels.allSatisfy { $0 <= 16 })
    }

    /// One corrupted copy of the real image per case: each refused with its own reason.
    @Test(arguments: [
        ("magic", 0, UInt8(0x00), "magic"),
        ("version", 8, UInt8(2), "version"),
        ("shape", 24, UInt8(9), "8x8x1"),
        ("counts", 16, UInt8(0), "counts"),
        ("data", 600, UInt8(0xff), "CRC-32"),
    ])
    func aDamagedImageIsOneClearError(what: String, offset: Int, byte: UInt8, expected: String) throws {
        var bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: Self.image)))
        if what == "data" {
            bytes[offset] ^= byte  // any change to the data must break its checksum
        } else {
            bytes[offset] = byte
        }
        if what == "counts" { for i in 16 ..< 20 { bytes[i] = 0 } }
        let path = NSTemporaryDirectory() + "digits-\(what)-\(getpid()).img"
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try DigitsDataset.load(path: path)
            Issue.record("a damaged image (\(what)) loaded")
        } catch {
            #expect(error.description.contains(expected), "\(what): \(error.description)")
        }
    }

    @Test func aMissingOrShortFileIsOneClearError() throws {
        #expect(throws: DigitsDataset.LoadError.self) { try DigitsDataset.load(path: "/nonexistent/digits.img") }
        let path = NSTemporaryDirectory() + "digits-short-\(getpid()).img"
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        do { _ = try DigitsDataset.load(path: path); Issue.record("a 3-byte file loaded") } catch {
            #expect(error.description.contains("shorter than 512 bytes"))
        }
    }
}
