/// Guest/build/mnist.img as scripts/make-dataset writes it (layout: Guest/README.md,
/// "mnist.img"), parsed and checked as the guest's lib/mnist_disk.c does: 785-byte records of
/// 28x28x1 u8 pixels and a u8 label, 4,000 train then 1,000 test.
public struct MNISTDataset: Sendable {
    public static let magic = Array("MALVMNST".utf8)
    public static let side = 28
    public static let recordBytes = side * side + 1
    public static let classes = 10

    public var trainCount: Int
    public var testCount: Int
    /// The records, back to back.
    public var trainRecords: [UInt8]
    public var testRecords: [UInt8]

    public static func load(path: String) throws(DigitsDataset.LoadError) -> MNISTDataset {
        let image = try DigitsDataset.readFile(path)
        typealias Failure = DigitsDataset.LoadError
        guard image.count >= 76 else { throw Failure("disk: '\(path)' is shorter than the mnist.img header") }
        func u32(_ at: Int) -> UInt32 {
            UInt32(image[at]) | UInt32(image[at + 1]) << 8 | UInt32(image[at + 2]) << 16 | UInt32(image[at + 3]) << 24
        }
        func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
        guard Array(image[0 ..< 8]) == magic, u32(8) == 1 else {
            throw Failure("disk: no mnist.img (magic/version); run scripts/make-dataset")
        }
        let train = Int(u32(16)), test = Int(u32(20))
        guard u32(24) == UInt32(side), u32(28) == UInt32(side), u32(32) == 1, u32(40) == UInt32(recordBytes) else {
            throw Failure("disk: records are not 28x28x1 + label")
        }
        let trainAt = u64(48), testAt = u64(56), dataEnd = u64(64)
        // Counts are u32 and offsets u64 from the file: compare in UInt64 so nothing overflows.
        guard dataEnd <= UInt64(image.count), train > 0, test > 0,
              trainAt <= dataEnd, UInt64(train) * UInt64(recordBytes) <= dataEnd - trainAt,
              testAt <= dataEnd, UInt64(test) * UInt64(recordBytes) <= dataEnd - testAt else {
            throw Failure("disk: the records run past the disk")
        }
        let trainRecords = Array(image[Int(trainAt) ..< Int(trainAt) + train * recordBytes])
        let testRecords = Array(image[Int(testAt) ..< Int(testAt) + test * recordBytes])
        for r in 0 ..< train where Int(trainRecords[r * recordBytes + recordBytes - 1]) >= classes {
            throw Failure("disk: train record \(r) has label \(trainRecords[r * recordBytes + recordBytes - 1])")
        }
        for r in 0 ..< test where Int(testRecords[r * recordBytes + recordBytes - 1]) >= classes {
            throw Failure("disk: test record \(r) has label \(testRecords[r * recordBytes + recordBytes - 1])")
        }
        return MNISTDataset(trainCount: train, testCount: test, trainRecords: trainRecords, testRecords: testRecords)
    }

    public func trainLabel(_ r: Int) -> UInt8 { trainRecords[r * Self.recordBytes + Self.recordBytes - 1] }
    public func testLabel(_ r: Int) -> UInt8 { testRecords[r * Self.recordBytes + Self.recordBytes - 1] }
}
