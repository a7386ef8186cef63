/// One unit of GPU work, described by value: which kernel, the shapes, and the buffer ranges
/// it reads and writes. A backend validates every kernel of a batch (`validate(capacity:)`)
/// before anything is recorded, so a bad description costs an error, never a device fault.
public enum Kernel: Hashable, Sendable {
    case sgemm(SGEMMParams)
    case biasAdd(BiasAddParams)
    case activation(ActivationParams)
    case activationBackward(ActivationBackwardParams)
    case softmax(SoftmaxParams)
    case softmaxCrossEntropy(SoftmaxCrossEntropyParams)
    case reduce(ReduceParams)
    case axpy(AxpyParams)
    case scale(ScaleParams)
    case conv2dForward(Conv2DForwardParams)
    case conv2dBackwardData(Conv2DBackwardDataParams)
    case conv2dBackwardFilter(Conv2DBackwardFilterParams)
    case normalizeU8(NormalizeParams)
    case crop(CropParams)
    case flipHorizontal(FlipParams)
    case resizeBilinear(ResizeParams)
    case maxPool2DForward(MaxPool2DForwardParams)
    case maxPool2DBackward(MaxPool2DBackwardParams)

    /// Largest dimension or element count any kernel accepts. Shaders index with 32-bit
    /// unsigned integers; keeping counts below 2^31 leaves headroom for offsets.
    public static let maxElements = Int(Int32.max)

    public var name: String {
        switch self {
        case .sgemm: return "sgemm"
        case .biasAdd: return "biasAdd"
        case .activation: return "activation"
        case .activationBackward: return "activationBackward"
        case .softmax: return "softmax"
        case .softmaxCrossEntropy: return "softmaxCrossEntropy"
        case .reduce: return "reduce"
        case .axpy: return "axpy"
        case .scale: return "scale"
        case .conv2dForward: return "conv2dForward"
        case .conv2dBackwardData: return "conv2dBackwardData"
        case .conv2dBackwardFilter: return "conv2dBackwardFilter"
        case .normalizeU8: return "normalizeU8"
        case .crop: return "crop"
        case .flipHorizontal: return "flipHorizontal"
        case .resizeBilinear: return "resizeBilinear"
        case .maxPool2DForward: return "maxPool2DForward"
        case .maxPool2DBackward: return "maxPool2DBackward"
        }
    }
}
