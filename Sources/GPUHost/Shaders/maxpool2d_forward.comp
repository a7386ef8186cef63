#version 450
// 2x2 stride-2 max pool, NCHW f32: out[p][y][x] = max of in[p][2y..2y+1][2x..2x+1], the window
// visited in row-major order and a later element taken only when strictly greater
// (MaxPool2DShape in Sources/GPUHost/Kernels/MaxPool2DParams.swift; maxpool2d_backward.comp
// recomputes the same argmax, so the two must keep this order and comparison).
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint planes; uint H; uint W; uint OH; uint OW; uint inOff; uint outOff;
} p;

void main() {
    uint total = p.planes * p.OH * p.OW;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint ox = idx % p.OW;
        uint rest = idx / p.OW;
        uint oy = rest % p.OH;
        uint plane = rest / p.OH;
        uint base = p.inOff + (plane * p.H + 2u * oy) * p.W + 2u * ox;
        float m = src[base];
        float v = src[base + 1u];
        if (v > m) m = v;
        v = src[base + p.W];
        if (v > m) m = v;
        v = src[base + p.W + 1u];
        if (v > m) m = v;
        dst[p.outOff + idx] = m;
    }
}
