// The pipeline description a guest enables `preprocess` with (configure's parameters), parsed
// and checked against the VM's disks; docs/mlaas.md documents the keys.

import PreprocessDraws

struct Pipeline {
    var disk = 0
    var offset: UInt64 = 0
    var records: UInt64 = 0
    var height = 0, width = 0, channels = 0
    var resizeHeight = 0, resizeWidth = 0
    var cropHeight = 0, cropWidth = 0
    var padding = 0
    var flip = false
    var mean: [Double] = [0]
    var std: [Double] = [1]
    var seed: UInt64 = 0
    var batch = 0
    /// Where batches go: a context of the vGPU the enable came through, and two of its HOST3D
    /// resources (two slots each). All three or none: without them the pipeline is only checked.
    var destination: Destination?

    struct Destination {
        var context: UInt32
        var images: UInt32
        var labels: UInt32
    }

    var recordBytes: UInt64 { UInt64(height * width * channels) + 1 }
    var pixelBytes: Int { height * width * channels }
    var hasCrop: Bool { cropHeight > 0 }
    /// What the per-image draws depend on (PreprocessDraws).
    var geometry: AugmentationGeometry {
        AugmentationGeometry(resizeHeight: resizeHeight, resizeWidth: resizeWidth, cropHeight: cropHeight,
                             cropWidth: cropWidth, padding: padding, flip: flip)
    }
    /// The size of an output image: the crop's, else the resize's.
    var outHeight: Int { hasCrop ? cropHeight : resizeHeight }
    var outWidth: Int { hasCrop ? cropWidth : resizeWidth }
    /// f32 values of one output image.
    var outValues: Int { channels * outHeight * outWidth }
    /// Bytes of one slot of the images resource (a batch of f32 NCHW images) and of the
    /// labels resource (a batch of u32 labels).
    var imageSlotBytes: UInt64 { UInt64(batch * outValues * 4) }
    var labelSlotBytes: UInt64 { UInt64(batch * 4) }
    /// Batches in an epoch (a last partial batch is dropped, as DataLoader's drop_last).
    var batchesPerEpoch: UInt64 { records / UInt64(batch) }
    /// The most values of one batch at any stage: bounded so every shape fits a kernel's
    /// 2^31 elements and the scratch buffers a context's quota.
    static let maxBatchValues = 1 << 26
    static let maxRecords: UInt64 = 1 << 24

    var summary: String {
        "disk \(disk) offset \(offset) \(records) records of \(height)x\(width)x\(channels)+label, resize \(resizeHeight)x\(resizeWidth)"
            + (cropHeight > 0 ? ", crop \(cropHeight)x\(cropWidth) padding \(padding)" : "") + (flip ? ", flip" : "")
            + ", seed \(seed), batch \(batch)"
    }

    struct Invalid: Error { let message: String }

    /// Parses and checks a description against the VM's granted ranges.
    init(parsing text: String, ranges: [(handle: UInt64, length: UInt64)]) throws(Invalid) {
        var seen = Set<String>()
        var context: UInt32?, images: UInt32?, labels: UInt32?
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard parts.count == 2, !parts[0].isEmpty else { throw Invalid(message: "'\(item)' is not key=value") }
            let key = String(parts[0]), value = String(parts[1])
            guard seen.insert(key).inserted else { throw Invalid(message: "'\(key)' is given twice") }
            switch key {
            case "disk": disk = try Self.integer(key, value, 0 ... 255)
            case "offset": offset = try Self.unsigned(key, value)
            case "records": records = try Self.unsigned(key, value)
            case "image": (height, width, channels) = try Self.shape(key, value, channels: true)
            case "resize": (resizeHeight, resizeWidth, _) = try Self.shape(key, value, channels: false)
            case "crop": (cropHeight, cropWidth, _) = try Self.shape(key, value, channels: false)
            case "padding": padding = try Self.integer(key, value, 0 ... 64)
            case "flip":
                switch value {
                case "on": flip = true
                case "off": flip = false
                default: throw Invalid(message: "flip must be on or off")
                }
            case "mean": mean = try Self.reals(key, value, positive: false)
            case "std": std = try Self.reals(key, value, positive: true)
            case "seed": seed = try Self.unsigned(key, value)
            case "batch": batch = try Self.integer(key, value, 1 ... 4096)
            case "context": context = UInt32(try Self.integer(key, value, 1 ... Int(UInt32.max)))
            case "images": images = UInt32(try Self.integer(key, value, 1 ... Int(UInt32.max)))
            case "labels": labels = UInt32(try Self.integer(key, value, 1 ... Int(UInt32.max)))
            default:
                throw Invalid(message: "unknown key '\(key)' (known: disk, offset, records, image, resize, crop, padding, flip, mean, std, seed, batch, context, images, labels)")
            }
        }
        switch (context, images, labels) {
        case let (context?, images?, labels?):
            guard images != labels else { throw Invalid(message: "images and labels must be different resources") }
            destination = Destination(context: context, images: images, labels: labels)
        case (nil, nil, nil): break
        default: throw Invalid(message: "context, images and labels go together (all three, or none to only check the pipeline)")
        }
        for required in ["disk", "records", "image", "batch"] where !seen.contains(required) {
            throw Invalid(message: "'\(required)' is missing")
        }
        if !seen.contains("resize") { (resizeHeight, resizeWidth) = (height, width) }
        guard records > 0 else { throw Invalid(message: "records must be at least 1") }
        // The epoch's shuffle holds one u32 per record in the host's memory.
        guard records <= Self.maxRecords else { throw Invalid(message: "records must be at most \(Self.maxRecords)") }
        guard UInt64(batch) <= records else { throw Invalid(message: "batch \(batch) is larger than the \(records) records") }
        guard seen.contains("crop") || padding == 0 else { throw Invalid(message: "padding needs a crop") }
        if seen.contains("crop") {
            guard cropHeight <= resizeHeight + 2 * padding, cropWidth <= resizeWidth + 2 * padding else {
                throw Invalid(message: "crop \(cropHeight)x\(cropWidth) is larger than the padded \(resizeHeight + 2 * padding)x\(resizeWidth + 2 * padding) image")
            }
        }
        for (name, values) in [("mean", mean), ("std", std)] where values.count != 1 && values.count != channels {
            throw Invalid(message: "\(name) needs 1 or \(channels) values, not \(values.count)")
        }
        // One value per channel from here on (the kernels take one each).
        if mean.count == 1 { mean = Array(repeating: mean[0], count: channels) }
        if std.count == 1 { std = Array(repeating: std[0], count: channels) }
        let widest = max(height * width, resizeHeight * resizeWidth, outHeight * outWidth)
        guard batch * channels * widest <= Self.maxBatchValues else {
            throw Invalid(message: "a batch of \(batch) images of up to \(channels)x\(widest) values exceeds \(Self.maxBatchValues) values")
        }
        guard disk < ranges.count else {
            throw Invalid(message: "disk \(disk) is not granted to this service (the VM has \(ranges.count) disk\(ranges.count == 1 ? "" : "s"))")
        }
        let (bytes, overflow) = records.multipliedReportingOverflow(by: recordBytes)
        let (end, overflow2) = offset.addingReportingOverflow(bytes)
        guard !overflow, !overflow2, end <= ranges[disk].length else {
            throw Invalid(message: "\(records) records of \(recordBytes) bytes from offset \(offset) end beyond disk \(disk) (\(ranges[disk].length) bytes)")
        }
    }

    static func integer(_ key: String, _ value: String, _ range: ClosedRange<Int>) throws(Invalid) -> Int {
        guard let number = Int(value), range.contains(number) else {
            throw Invalid(message: "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return number
    }

    static func unsigned(_ key: String, _ value: String) throws(Invalid) -> UInt64 {
        guard let number = UInt64(value) else { throw Invalid(message: "\(key) must be a non-negative integer") }
        return number
    }

    static func shape(_ key: String, _ value: String, channels: Bool) throws(Invalid) -> (Int, Int, Int) {
        let parts = value.split(separator: "x", omittingEmptySubsequences: false).map { Int($0) }
        let form = channels ? "HxWxC" : "HxW"
        guard parts.count == (channels ? 3 : 2), let height = parts[0], let width = parts[1],
              (1 ... 4096).contains(height), (1 ... 4096).contains(width) else {
            throw Invalid(message: "\(key) must be \(form) with H and W in 1...4096")
        }
        guard channels else { return (height, width, 0) }
        guard let c = parts[2], (1 ... 4).contains(c) else { throw Invalid(message: "\(key)'s channels must be 1...4") }
        return (height, width, c)
    }

    static func reals(_ key: String, _ value: String, positive: Bool) throws(Invalid) -> [Double] {
        // Parsed as f32 directly (then widened exactly), so "0.1307" is the same f32 a guest's C
        // literal 0.1307f is: one rounding, never two.
        let values = value.split(separator: "/", omittingEmptySubsequences: false).map { Float($0).map(Double.init) }
        guard (1 ... 4).contains(values.count), values.allSatisfy({ $0 != nil && $0!.isFinite && (!positive || $0! > 0) }) else {
            throw Invalid(message: "\(key) must be 1-4 finite numbers separated by '/'\(positive ? ", each above 0" : "")")
        }
        return values.map { $0! }
    }
}

