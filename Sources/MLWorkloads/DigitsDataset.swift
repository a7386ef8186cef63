#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// scikit-learn's digits as scripts/make-dataset writes them (Guest/build/digits.img), parsed
/// and checked exactly as the guest's test=train does (Guest/tests/train.c, read_dataset).
public struct DigitsDataset: Sendable {
    public static let magic = Array("MALVDIGT".utf8)
    public static let headerBytes = 512
    public static let maxTrain = 4096
    public static let maxTest = 4096

    public var version: UInt32
    public var trainCount: Int
    public var testCount: Int
    public var height: Int, width: Int, channels: Int
    public var classes: Int
    public var maxValue: UInt32
    public var seed: UInt32
    public var crc32: UInt32
    /// u8 pixels, N x 64, and u8 labels.
    public var trainPixels: [UInt8]
    public var trainLabels: [UInt8]
    public var testPixels: [UInt8]
    public var testLabels: [UInt8]

    public struct LoadError: Error, CustomStringConvertible {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    public static func load(path: String, inputs: Int = 64, classes: Int = 10) throws(LoadError) -> DigitsDataset {
        let image = try readFile(path)
        guard image.count >= headerBytes else { throw LoadError("disk: reading the header: file is shorter than 512 bytes") }
        func u32(_ at: Int) -> UInt32 {
            UInt32(image[at]) | UInt32(image[at + 1]) << 8 | UInt32(image[at + 2]) << 16 | UInt32(image[at + 3]) << 24
        }
        func u64(_ at: Int) -> UInt64 { UInt64(u32(at)) | UInt64(u32(at + 4)) << 32 }
        guard Array(image[0 ..< 8]) == magic else { throw LoadError("disk: no digits image (magic); run scripts/make-dataset") }
        let version = u32(8), header = u32(12)
        guard version == 1, header == UInt32(headerBytes) else { throw LoadError("disk: unsupported digits image version") }
        let train = Int(u32(16)), test = Int(u32(20))
        let height = Int(u32(24)), width = Int(u32(28)), channels = Int(u32(32)), nclasses = Int(u32(36))
        let maxValue = u32(40), seed = u32(44)
        let trainPixels = u64(56), trainLabels = u64(64), testPixels = u64(72), testLabels = u64(80)
        let dataEnd = u64(88)
        let dataCRC = u32(96)
        guard height * width * channels == inputs, nclasses == classes else {
            throw LoadError("disk: images are not 8x8x1 in 10 classes")
        }
        guard train > 0, train <= maxTrain, test > 0, test <= maxTest else { throw LoadError("disk: bad image counts") }
        let sections: [(UInt64, UInt64)] = [(trainPixels, UInt64(train * inputs)), (trainLabels, UInt64(train)),
                                            (testPixels, UInt64(test * inputs)), (testLabels, UInt64(test))]
        let capacity = UInt64(image.count) / 512 * 512
        guard dataEnd <= capacity, dataEnd <= 64 << 20 else { throw LoadError("disk: data runs past the end of the disk") }
        for (offset, length) in sections where offset < UInt64(headerBytes) || offset + length > dataEnd {
            throw LoadError("disk: a section lies outside the data")
        }
        let crc = CRC32.checksum(image[headerBytes ..< Int(dataEnd)])
        guard crc == dataCRC else {
            throw LoadError("disk: data CRC-32 0x\(hex8(crc)), header says 0x\(hex8(dataCRC))")
        }
        func slice(_ section: (UInt64, UInt64)) -> [UInt8] { Array(image[Int(section.0) ..< Int(section.0 + section.1)]) }
        let dataset = DigitsDataset(
            version: version, trainCount: train, testCount: test, height: height, width: width, channels: channels,
            classes: nclasses, maxValue: maxValue, seed: seed, crc32: crc,
            trainPixels: slice(sections[0]), trainLabels: slice(sections[1]),
            testPixels: slice(sections[2]), testLabels: slice(sections[3]))
        guard !dataset.trainPixels.contains(where: { UInt32($0) > maxValue }) else {
            throw LoadError("disk: a train pixel is above max_value")
        }
        guard !dataset.trainLabels.contains(where: { Int($0) >= classes }) else {
            throw LoadError("disk: a train label is out of range")
        }
        guard !dataset.testLabels.contains(where: { Int($0) >= classes }) else {
            throw LoadError("disk: a test label is out of range")
        }
        return dataset
    }

    /// The guest's "train: digits image ..." line.
    public var summary: String {
        "digits image v\(version): \(trainCount) train, \(testCount) test, \(height)x\(width)x\(channels), "
            + "0..\(maxValue), \(classes) classes, shuffle seed \(seed), crc32 0x\(hex8(crc32)) ok"
    }

    /// The whole file (a dataset disk image: at most 128 MiB).
    static func readFile(_ path: String) throws(LoadError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LoadError("disk: cannot open '\(path)': \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw LoadError("disk: reading '\(path)': \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            bytes += chunk[0 ..< n]
            guard bytes.count <= 128 << 20 else { throw LoadError("disk: '\(path)' is too large for a dataset image") }
        }
        return bytes
    }
}

func hex8(_ value: UInt32) -> String {
    let text = String(value, radix: 16)
    return String(repeating: "0", count: max(0, 8 - text.count)) + text
}

/// CRC-32 (IEEE 802.3, reflected, as zlib and the guest's crc32_update compute it).
enum CRC32 {
    static let table: [UInt32] = (0 ..< 256).map { index -> UInt32 in
        var c = UInt32(index)
        for _ in 0 ..< 8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    static func checksum<C: Collection>(_ bytes: C) -> UInt32 where C.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }
}
