/// Decoded 8-bit images (N x H x W x C, channels interleaved as decoders emit them) to the
/// f32 N x C x H x W tensor a model takes: out = (in * scale - mean[c]) / std[c].
/// The defaults are torchvision's ToTensor + Normalize with ImageNet statistics.
public struct NormalizeParams: Hashable, Sendable {
    public static let maxChannels = 4

    public var batch: Int
    public var height: Int
    public var width: Int
    public var channels: Int
    public var scale: Float
    public var mean: [Float]
    public var std: [Float]
    /// uint8 elements.
    public var input: BufferRange
    public var output: BufferRange

    public init(batch: Int, height: Int, width: Int, channels: Int = 3, scale: Float = 1.0 / 255.0,
                mean: [Float] = [0.485, 0.456, 0.406], std: [Float] = [0.229, 0.224, 0.225],
                input: BufferRange, output: BufferRange) {
        self.batch = batch
        self.height = height
        self.width = width
        self.channels = channels
        self.scale = scale
        self.mean = mean
        self.std = std
        self.input = input
        self.output = output
    }
}

/// NCHW f32 crop of the input padded by `padding` elements of `padValue` on every side:
/// output[n][c][y][x] = padded[n][c][top + y][left + x], where padded[n][c][i][j] is
/// input[n][c][i - padding][j - padding] inside the input and `padValue` outside it. With
/// padding 0 (the compute stream's CROP) this is a plain crop; with padding it is torchvision's
/// RandomCrop(size, padding) at one offset, in one pass.
///
/// With `offsets` (u32, three per image: top, left, flip) every image of the batch is cropped at
/// its own offset and, where its flip word is not 0, mirrored: out[n][c][y][x] =
/// padded[n][c][top_n + y][left_n + x'] with x' = outWidth - 1 - x for a flipped image. One
/// dispatch crops and flips a whole batch at random offsets (the MLaaS preprocess service's
/// RandomCrop + RandomHorizontalFlip; a dispatch per image is what a batch cost before).
/// `top` and `left` must then be 0. The offsets are data, not checked at submission: an offset
/// past the padded image reads padding (or wraps in 32 bits on a GPU), never outside the plane.
public struct CropParams: Hashable, Sendable {
    /// The largest padding accepted: as much as an image side.
    public static let maxPadding = 4096

    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var top: Int
    public var left: Int
    public var outHeight: Int
    public var outWidth: Int
    /// Elements of `padValue` around each side of every input plane (0: none).
    public var padding: Int
    public var padValue: Float
    /// Per-image (top, left, flip) u32 triples; nil: `top` and `left` for every image.
    public var offsets: BufferRange?
    public var input: BufferRange
    public var output: BufferRange

    public init(batch: Int, channels: Int, height: Int, width: Int, top: Int, left: Int,
                outHeight: Int, outWidth: Int, padding: Int = 0, padValue: Float = 0, offsets: BufferRange? = nil,
                input: BufferRange, output: BufferRange) {
        self.offsets = offsets
        self.padding = padding
        self.padValue = padValue
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
        self.top = top
        self.left = left
        self.outHeight = outHeight
        self.outWidth = outWidth
        self.input = input
        self.output = output
    }
}

/// NCHW f32 mirror: output[n][c][y][x] = input[n][c][y][width - 1 - x].
public struct FlipParams: Hashable, Sendable {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var input: BufferRange
    public var output: BufferRange

    public init(batch: Int, channels: Int, height: Int, width: Int, input: BufferRange, output: BufferRange) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
        self.input = input
        self.output = output
    }
}

/// NCHW f32 bilinear resize with half-pixel centres, as PyTorch `interpolate(mode="bilinear",
/// align_corners=False)`: src = (dst + 0.5) * in / out - 0.5, clamped at 0, far neighbour
/// clamped to the edge.
public struct ResizeParams: Hashable, Sendable {
    public var batch: Int
    public var channels: Int
    public var height: Int
    public var width: Int
    public var outHeight: Int
    public var outWidth: Int
    public var input: BufferRange
    public var output: BufferRange

    public init(batch: Int, channels: Int, height: Int, width: Int, outHeight: Int, outWidth: Int,
                input: BufferRange, output: BufferRange) {
        self.batch = batch
        self.channels = channels
        self.height = height
        self.width = width
        self.outHeight = outHeight
        self.outWidth = outWidth
        self.input = input
        self.output = output
    }
}
