#version 450
// out[n][c][y][x] = in[n][c][top + y][left + x] (NCHW, f32).
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint planes; uint H; uint W; uint outH; uint outW; uint top; uint left;
    uint inOff; uint outOff;
} p;

void main() {
    uint total = p.planes * p.outH * p.outW;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint x = idx % p.outW;
        uint t = idx / p.outW;
        uint y = t % p.outH;
        uint plane = t / p.outH;
        dst[p.outOff + idx] = src[p.inOff + (plane * p.H + p.top + y) * p.W + p.left + x];
    }
}
