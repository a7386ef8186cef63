#version 450
// out[c] = sum_{o,i} in[o][c][i] over an (outer, channels, inner) view: the bias gradient of
// a convolution (N, K, P*Q). One workgroup per channel, tree-reduced in shared memory.
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint outer; uint channels; uint inner; uint inOff; uint outOff;
} p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint span = p.outer * p.inner;
    uint ch = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (ch < p.channels) {
        float acc = 0.0;
        for (uint i = lid; i < span; i += 64u) {
            uint o = i / p.inner;
            uint j = i % p.inner;
            acc += src[p.inOff + (o * p.channels + ch) * p.inner + j];
        }
        red[lid] = acc;
        barrier();
        for (uint st = 32u; st > 0u; st >>= 1) {
            if (lid < st) red[lid] += red[lid + st];
            barrier();
        }
        if (lid == 0u) dst[p.outOff + ch] = red[0];
    }
}
