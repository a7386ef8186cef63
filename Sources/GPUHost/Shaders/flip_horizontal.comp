#version 450
// out[n][c][y][x] = in[n][c][y][W - 1 - x] (NCHW, f32).
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint planes; uint H; uint W; uint inOff; uint outOff;
} p;

void main() {
    uint total = p.planes * p.H * p.W;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint x = idx % p.W;
        uint row = idx / p.W;
        dst[p.outOff + idx] = src[p.inOff + row * p.W + (p.W - 1u - x)];
    }
}
