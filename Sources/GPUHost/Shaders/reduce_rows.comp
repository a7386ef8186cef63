#version 450
// out[r] = reduce_j in[r][j] (op 0 = sum, 1 = max): one workgroup per row, tree-reduced in
// shared memory.
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint op; uint rows; uint cols; uint inOff; uint outOff;
} p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    float identity = (p.op == 0u) ? 0.0 : uintBitsToFloat(0xff800000u);
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row < p.rows) {
        uint base = p.inOff + row * p.cols;
        float acc = identity;
        for (uint j = lid; j < p.cols; j += 64u) {
            float v = src[base + j];
            acc = (p.op == 0u) ? acc + v : max(acc, v);
        }
        red[lid] = acc;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (lid < s) red[lid] = (p.op == 0u) ? red[lid] + red[lid + s] : max(red[lid], red[lid + s]);
            barrier();
        }
        if (lid == 0u) dst[p.outOff + row] = red[0];
    }
}
