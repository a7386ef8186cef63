#version 450
// CROP with per-image offsets (CropParams.offsets): image n is cropped at (top_n, left_n) of its
// planes padded by `padding` elements of `padValue`, and mirrored when flip_n is not 0:
//   out[n][c][y][x] = padded[n][c][top_n + y][left_n + (flip_n ? outW - 1 - x : x)]
// with (top_n, left_n, flip_n) = offsets[3n .. 3n + 2]. One dispatch for a whole batch of
// random crops and flips. Every read is checked against the plane: offsets are data.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };
layout(std430, set = 0, binding = 2) readonly buffer Offsets { uint offsets[]; };

layout(push_constant) uniform Params {
    uint batch; uint channels; uint H; uint W; uint outH; uint outW;
    uint inOff; uint outOff; uint offOff; uint padding; float padValue;
} p;

void main() {
    uint total = p.batch * p.channels * p.outH * p.outW;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint x = idx % p.outW;
        uint t = idx / p.outW;
        uint y = t % p.outH;
        uint plane = t / p.outH;
        uint n = plane / p.channels;
        uint top = offsets[p.offOff + 3u * n];
        uint left = offsets[p.offOff + 3u * n + 1u];
        uint sx = offsets[p.offOff + 3u * n + 2u] != 0u ? p.outW - 1u - x : x;
        int row = int(top + y) - int(p.padding);
        int column = int(left + sx) - int(p.padding);
        bool inside = row >= 0 && row < int(p.H) && column >= 0 && column < int(p.W);
        dst[p.outOff + idx] = inside ? src[p.inOff + (plane * p.H + uint(row)) * p.W + uint(column)] : p.padValue;
    }
}
