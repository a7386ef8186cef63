#version 450
// out[n][c][y][x] = padded[n][c][top + y][left + x] (NCHW, f32), where `padded` is the input
// with `padding` elements of `padValue` on every side (padding 0: a plain crop).
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint planes; uint H; uint W; uint outH; uint outW; uint top; uint left;
    uint inOff; uint outOff; uint padding; float padValue;
} p;

void main() {
    uint total = p.planes * p.outH * p.outW;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint x = idx % p.outW;
        uint t = idx / p.outW;
        uint y = t % p.outH;
        uint plane = t / p.outH;
        // Signed: inside the padding these are negative (validation keeps them above -2^31).
        int row = int(p.top + y) - int(p.padding);
        int column = int(p.left + x) - int(p.padding);
        bool inside = row >= 0 && row < int(p.H) && column >= 0 && column < int(p.W);
        dst[p.outOff + idx] = inside ? src[p.inOff + (plane * p.H + uint(row)) * p.W + uint(column)] : p.padValue;
    }
}
