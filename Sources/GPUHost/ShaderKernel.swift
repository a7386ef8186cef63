/// The compiled compute shaders, one per file in Shaders/ (the raw value is the file stem and
/// the key into the generated SPIR-V table).
enum ShaderKernel: String, CaseIterable, Sendable {
    case sgemm
    /// The large-matrix sgemm (128x128 tiles); `SGEMMVariant` picks between the two.
    case sgemmTile128 = "sgemm_tile128"
    case biasAdd = "bias_add"
    case activation
    case activationBackward = "activation_backward"
    case softmax
    case softmaxCrossEntropy = "softmax_cross_entropy"
    case reduceRows = "reduce_rows"
    case reduceColumns = "reduce_columns"
    case axpy
    case scale
    case conv2dForward = "conv2d_forward"
    case conv2dBackwardData = "conv2d_backward_data"
    case conv2dBackwardFilter = "conv2d_backward_filter"
    case channelSum = "channel_sum"
    case normalizeU8 = "normalize_u8"
    case crop
    /// CROP with per-image offsets and flips (CropParams.offsets).
    case cropBatch = "crop_batch"
    case flipHorizontal = "flip_horizontal"
    case resizeBilinear = "resize_bilinear"
    case maxPool2DForward = "maxpool2d_forward"
    case maxPool2DBackward = "maxpool2d_backward"

    /// Storage-buffer bindings in descriptor set 0, numbered from 0 (matches the GLSL).
    var bindingCount: Int {
        switch self {
        case .scale: return 1
        case .biasAdd, .activation, .softmax, .reduceRows, .reduceColumns, .axpy, .channelSum,
             .normalizeU8, .crop, .flipHorizontal, .resizeBilinear, .maxPool2DForward:
            return 2
        case .sgemm, .sgemmTile128, .activationBackward, .conv2dBackwardData, .conv2dBackwardFilter, .cropBatch,
             .maxPool2DBackward:
            return 3
        case .softmaxCrossEntropy, .conv2dForward:
            return 4
        }
    }

    static var maxBindingCount: Int { allCases.map(\.bindingCount).max() ?? 0 }

    var spirv: [UInt32]? { GeneratedShaders.byName[rawValue] }
}
