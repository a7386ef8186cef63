#version 450
// Row-wise numerically stable softmax: one workgroup per row (rows numbered across a 2-D
// group grid), the max and the sum reduced in shared memory.
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Params {
    uint rows; uint cols; uint xOff; uint yOff;
} p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row < p.rows) {
        uint base = row * p.cols;
        float m = uintBitsToFloat(0xff800000u); // -inf
        for (uint j = lid; j < p.cols; j += 64u) m = max(m, x[p.xOff + base + j]);
        red[lid] = m;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (lid < s) red[lid] = max(red[lid], red[lid + s]);
            barrier();
        }
        float rowMax = red[0];
        barrier();

        float sum = 0.0;
        for (uint j = lid; j < p.cols; j += 64u) sum += exp(x[p.xOff + base + j] - rowMax);
        red[lid] = sum;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (lid < s) red[lid] += red[lid + s];
            barrier();
        }
        float inv = 1.0 / red[0];
        barrier();

        for (uint j = lid; j < p.cols; j += 64u)
            y[p.yOff + base + j] = exp(x[p.xOff + base + j] - rowMax) * inv;
    }
}
