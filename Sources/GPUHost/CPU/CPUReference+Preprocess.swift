extension CPUReference {
    static func normalizeU8(_ p: NormalizeParams, input: [UInt8]) -> [Float] {
        var out = [Float](repeating: 0, count: input.count)
        for n in 0 ..< p.batch {
            for c in 0 ..< p.channels {
                for y in 0 ..< p.height {
                    for x in 0 ..< p.width {
                        let value = Float(input[((n * p.height + y) * p.width + x) * p.channels + c])
                        out[((n * p.channels + c) * p.height + y) * p.width + x] = (value * p.scale - p.mean[c]) / p.std[c]
                    }
                }
            }
        }
        return out
    }

    /// `offsets`: the per-image (top, left, flip) words when `p.offsets` is set.
    static func crop(_ p: CropParams, input: [Float], offsets: [UInt32] = []) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(p.batch * p.channels * p.outHeight * p.outWidth)
        for plane in 0 ..< p.batch * p.channels {
            let n = plane / p.channels
            let perImage = p.offsets != nil && offsets.count >= 3 * (n + 1)
            let top = perImage ? Int(offsets[3 * n]) : p.top
            let left = perImage ? Int(offsets[3 * n + 1]) : p.left
            let flip = perImage && offsets[3 * n + 2] != 0
            for y in 0 ..< p.outHeight {
                // Coordinates in the input; outside it lies the padding.
                let row = top + y - p.padding
                for x in 0 ..< p.outWidth {
                    let column = left + (flip ? p.outWidth - 1 - x : x) - p.padding
                    let inside = row >= 0 && row < p.height && column >= 0 && column < p.width
                    out.append(inside ? input[(plane * p.height + row) * p.width + column] : p.padValue)
                }
            }
        }
        return out
    }

    static func flipHorizontal(_ p: FlipParams, input: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: input.count)
        for row in 0 ..< p.batch * p.channels * p.height {
            for x in 0 ..< p.width {
                out[row * p.width + x] = input[row * p.width + (p.width - 1 - x)]
            }
        }
        return out
    }

    /// Same arithmetic, in the same Float precision and order, as resize_bilinear.comp, so
    /// the two agree to rounding.
    static func resizeBilinear(_ p: ResizeParams, input: [Float]) -> [Float] {
        let scaleY = Float(p.height) / Float(p.outHeight)
        let scaleX = Float(p.width) / Float(p.outWidth)
        var out = [Float](repeating: 0, count: p.batch * p.channels * p.outHeight * p.outWidth)
        for plane in 0 ..< p.batch * p.channels {
            let base = plane * p.height * p.width
            for y in 0 ..< p.outHeight {
                let sy = Swift.max((Float(y) + 0.5) * scaleY - 0.5, 0)
                let y0 = Swift.min(Int(sy), p.height - 1)
                let y1 = Swift.min(y0 + 1, p.height - 1)
                let ly = sy - Float(y0)
                for x in 0 ..< p.outWidth {
                    let sx = Swift.max((Float(x) + 0.5) * scaleX - 0.5, 0)
                    let x0 = Swift.min(Int(sx), p.width - 1)
                    let x1 = Swift.min(x0 + 1, p.width - 1)
                    let lx = sx - Float(x0)
                    let v00 = input[base + y0 * p.width + x0]
                    let v01 = input[base + y0 * p.width + x1]
                    let v10 = input[base + y1 * p.width + x0]
                    let v11 = input[base + y1 * p.width + x1]
                    let top = v00 + (v01 - v00) * lx
                    let bottom = v10 + (v11 - v10) * lx
                    out[(plane * p.outHeight + y) * p.outWidth + x] = top + (bottom - top) * ly
                }
            }
        }
        return out
    }
}
