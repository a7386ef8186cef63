#version 450
// Backward of maxpool2d_forward.comp: one invocation per input element, which receives its
// window's output gradient if it is the window's argmax (row-major order, strictly greater
// replaces: the first of tied maxima wins) and 0 otherwise, also outside every window (an odd
// last row or column). Each element belongs to at most one window, so no two invocations write
// one place and no atomics are needed.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) readonly buffer OutGrad { float dy[]; };
layout(std430, set = 0, binding = 2) writeonly buffer InGrad { float dx[]; };

layout(push_constant) uniform Params {
    uint planes; uint H; uint W; uint OH; uint OW; uint inOff; uint dyOff; uint dxOff;
} p;

void main() {
    uint total = p.planes * p.H * p.W;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint x = idx % p.W;
        uint rest = idx / p.W;
        uint y = rest % p.H;
        uint plane = rest / p.H;
        uint oy = y / 2u, ox = x / 2u;
        float g = 0.0;
        if (oy < p.OH && ox < p.OW) {
            uint base = p.inOff + (plane * p.H + 2u * oy) * p.W + 2u * ox;
            float m = src[base];
            uint arg = 0u;
            float v = src[base + 1u];
            if (v > m) { m = v; arg = 1u; }
            v = src[base + p.W];
            if (v > m) { m = v; arg = 2u; }
            v = src[base + p.W + 1u];
            if (v > m) { m = v; arg = 3u; }
            uint mine = (y & 1u) * 2u + (x & 1u);
            if (mine == arg)
                g = dy[p.dyOff + (plane * p.OH + oy) * p.OW + ox];
        }
        dx[p.dxOff + idx] = g;
    }
}
