@testable import GPUHost
import Testing

@Suite("Preprocessing")
struct PreprocessTests {
    static let imageShapes = [(1, 1, 1), (2, 7, 33), (1, 33, 7), (3, 16, 16), (1, 1, 1000)]

    @Test("u8 to normalised f32 matches the reference", .enabled(if: Backends.hasVulkan),
          arguments: imageShapes, [1, 3, 4])
    func normalize(_ shape: (Int, Int, Int), _ channels: Int) throws {
        let (batch, height, width) = shape
        let mean: [Float] = [0.485, 0.456, 0.406, 0.5].prefix(channels).map { $0 }
        let std: [Float] = [0.229, 0.224, 0.225, 0.25].prefix(channels).map { $0 }
        let outputs = try compareBackends { space in
            var random = TestRandom(seed: UInt64(batch * height * width * channels))
            let input = try space.bytes(random.bytes(batch * height * width * channels))
            let output = try space.zeros(batch * height * width * channels)
            return KernelCase(kernel: .normalizeU8(NormalizeParams(batch: batch, height: height, width: width, channels: channels,
                                                                   mean: mean, std: std, input: input, output: output)),
                              outputs: [output])
        }
        for (reference, vulkan) in outputs {
            expectClose(vulkan, reference, atol: 1e-6, rtol: 1e-6, "normalize \(shape) C\(channels)")
        }
    }

    @Test("reference normalise by hand: HWC bytes become CHW floats")
    func normalizeByHand() {
        // 1x1x2 image, 2 channels: pixels (0, 255), (51, 102).
        let p = NormalizeParams(batch: 1, height: 1, width: 2, channels: 2, scale: 1.0 / 255.0, mean: [0, 0.5], std: [1, 0.5],
                                input: dummy, output: dummy)
        let out = CPUReference.normalizeU8(p, input: [0, 255, 51, 102])
        expectClose(out, [0, 0.2, 1, -0.2], atol: 1e-6, rtol: 0, "normalize")
    }

    @Test("crop, flip and resize match the reference", .enabled(if: Backends.hasVulkan), arguments: imageShapes)
    func geometry(_ shape: (Int, Int, Int)) throws {
        let (batch, height, width) = shape
        let channels = 3
        let count = batch * channels * height * width
        let (outHeight, outWidth) = (max(1, height / 2 + 1), max(1, width / 3 + 1))
        let cropped = try compareBackends { space in
            var random = TestRandom(seed: UInt64(count))
            let input = try space.floats(random.floats(count))
            let output = try space.zeros(batch * channels * outHeight * outWidth)
            return KernelCase(kernel: .crop(CropParams(batch: batch, channels: channels, height: height, width: width,
                                                       top: height - outHeight, left: (width - outWidth) / 2,
                                                       outHeight: outHeight, outWidth: outWidth, input: input, output: output)),
                              outputs: [output])
        }
        for (reference, vulkan) in cropped { #expect(vulkan == reference, "crop \(shape)") }

        // Padded (the preprocess service's random crop): windows reaching into every side's
        // padding, and one wholly inside it.
        let padding = 3
        for (top, left) in [(0, 0), (2 * padding + height - outHeight, 2 * padding + width - outWidth), (1, padding + 1)] {
            let padded = try compareBackends { space in
                var random = TestRandom(seed: UInt64(count) + 3)
                let input = try space.floats(random.floats(count))
                let output = try space.zeros(batch * channels * outHeight * outWidth)
                return KernelCase(kernel: .crop(CropParams(batch: batch, channels: channels, height: height, width: width,
                                                           top: top, left: left, outHeight: outHeight, outWidth: outWidth,
                                                           padding: padding, padValue: -0.4242, input: input, output: output)),
                                  outputs: [output])
            }
            for (reference, vulkan) in padded { #expect(vulkan == reference, "padded crop \(shape) at \(top),\(left)") }
        }

        // Per-image offsets and flips in one dispatch (the preprocess service's batches): every
        // image at its own window, half of them mirrored, some windows in the padding.
        let perImage = try compareBackends { space in
            var random = TestRandom(seed: UInt64(count) + 4)
            let input = try space.floats(random.floats(count))
            let output = try space.zeros(batch * channels * outHeight * outWidth)
            let words: [UInt32] = (0 ..< batch).flatMap { n -> [UInt32] in
                [UInt32((n * 5) % (height + 2 * padding - outHeight + 1)), UInt32((n * 3) % (width + 2 * padding - outWidth + 1)),
                 UInt32(n % 2)]
            }
            let offsets = try space.uint32s(words)
            return KernelCase(kernel: .crop(CropParams(batch: batch, channels: channels, height: height, width: width,
                                                       top: 0, left: 0, outHeight: outHeight, outWidth: outWidth,
                                                       padding: padding, padValue: 0.75, offsets: offsets,
                                                       input: input, output: output)),
                              outputs: [output])
        }
        for (reference, vulkan) in perImage { #expect(vulkan == reference, "per-image crop \(shape)") }

        let flipped = try compareBackends { space in
            var random = TestRandom(seed: UInt64(count) + 1)
            let input = try space.floats(random.floats(count))
            let output = try space.zeros(count)
            return KernelCase(kernel: .flipHorizontal(FlipParams(batch: batch, channels: channels, height: height, width: width,
                                                                 input: input, output: output)), outputs: [output])
        }
        for (reference, vulkan) in flipped { #expect(vulkan == reference, "flip \(shape)") }

        for (targetHeight, targetWidth) in [(height * 2 + 1, width * 3), (max(1, height / 3), max(1, width / 2)), (7, 33)] {
            let resized = try compareBackends { space in
                var random = TestRandom(seed: UInt64(count) + 2)
                let input = try space.floats(random.floats(count))
                let output = try space.zeros(batch * channels * targetHeight * targetWidth)
                return KernelCase(kernel: .resizeBilinear(ResizeParams(batch: batch, channels: channels, height: height, width: width,
                                                                       outHeight: targetHeight, outWidth: targetWidth,
                                                                       input: input, output: output)), outputs: [output])
            }
            // Same Float formula on both sides; only fused multiply-adds may differ.
            for (reference, vulkan) in resized {
                expectClose(vulkan, reference, atol: 1e-5, rtol: 1e-5, "resize \(shape) to \(targetHeight)x\(targetWidth)")
            }
        }
    }

    @Test("reference crop, flip and resize by hand")
    func geometryByHand() {
        let plane: [Float] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12] // 3x4
        let crop = CPUReference.crop(CropParams(batch: 1, channels: 1, height: 3, width: 4, top: 1, left: 1, outHeight: 2,
                                                outWidth: 2, input: dummy, output: dummy), input: plane)
        #expect(crop == [6, 7, 10, 11])
        // Padding 1 of -1 around the 3x4 plane; a 3x3 window from the padded top-left corner.
        let padded = CPUReference.crop(CropParams(batch: 1, channels: 1, height: 3, width: 4, top: 0, left: 0, outHeight: 3,
                                                  outWidth: 3, padding: 1, padValue: -1, input: dummy, output: dummy), input: plane)
        #expect(padded == [-1, -1, -1, -1, 1, 2, -1, 5, 6])
        // The bottom-right corner of the padded 5x6 plane.
        let corner = CPUReference.crop(CropParams(batch: 1, channels: 1, height: 3, width: 4, top: 3, left: 4, outHeight: 2,
                                                  outWidth: 2, padding: 1, padValue: -1, input: dummy, output: dummy), input: plane)
        #expect(corner == [12, -1, -1, -1])
        // Per image: two copies of the plane, the first at (1, 1), the second at (0, 0) mirrored.
        let twice = CPUReference.crop(CropParams(batch: 2, channels: 1, height: 3, width: 4, top: 0, left: 0, outHeight: 2,
                                                 outWidth: 3, padding: 1, padValue: -1, offsets: dummy, input: dummy, output: dummy),
                                      input: plane + plane, offsets: [1, 1, 0, 0, 0, 1])
        #expect(twice == [1, 2, 3, 5, 6, 7] + [-1, -1, -1, 2, 1, -1])
        let flip = CPUReference.flipHorizontal(FlipParams(batch: 1, channels: 1, height: 3, width: 4, input: dummy, output: dummy),
                                               input: plane)
        #expect(flip == [4, 3, 2, 1, 8, 7, 6, 5, 12, 11, 10, 9])
        func resize(_ outHeight: Int, _ outWidth: Int, _ input: [Float], _ height: Int, _ width: Int) -> [Float] {
            CPUReference.resizeBilinear(ResizeParams(batch: 1, channels: 1, height: height, width: width, outHeight: outHeight,
                                                     outWidth: outWidth, input: dummy, output: dummy), input: input)
        }
        #expect(resize(3, 4, plane, 3, 4) == plane, "same size is the identity")
        // PyTorch: interpolate([[0, 1]], size=(1, 4), bilinear, align_corners=False) = [0, 0.25, 0.75, 1].
        #expect(resize(1, 4, [0, 1], 1, 2) == [0, 0.25, 0.75, 1])
        // Halving averages 2x2 blocks with half-pixel centres.
        #expect(resize(1, 2, [0, 2, 4, 6, 1, 3, 5, 7], 2, 4) == [1.5, 5.5])
    }
}
