#version 450
// Bilinear resize of NCHW f32 planes with half-pixel centres (PyTorch align_corners=False):
// src = (dst + 0.5) * in/out - 0.5, clamped at 0; the far neighbour is clamped to the edge.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint planes; uint H; uint W; uint outH; uint outW; uint inOff; uint outOff;
    float scaleY; float scaleX;
} p;

void main() {
    uint total = p.planes * p.outH * p.outW;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint x = idx % p.outW;
        uint t = idx / p.outW;
        uint y = t % p.outH;
        uint plane = t / p.outH;

        float sy = max((float(y) + 0.5) * p.scaleY - 0.5, 0.0);
        float sx = max((float(x) + 0.5) * p.scaleX - 0.5, 0.0);
        uint y0 = min(uint(sy), p.H - 1u);
        uint x0 = min(uint(sx), p.W - 1u);
        uint y1 = min(y0 + 1u, p.H - 1u);
        uint x1 = min(x0 + 1u, p.W - 1u);
        float ly = sy - float(y0);
        float lx = sx - float(x0);

        uint base = p.inOff + plane * p.H * p.W;
        float v00 = src[base + y0 * p.W + x0];
        float v01 = src[base + y0 * p.W + x1];
        float v10 = src[base + y1 * p.W + x0];
        float v11 = src[base + y1 * p.W + x1];
        float top = v00 + (v01 - v00) * lx;
        float bottom = v10 + (v11 - v10) * lx;
        dst[p.outOff + idx] = top + (bottom - top) * ly;
    }
}
