#version 450
// out[j] = reduce_r in[r][j] (op 0 = sum, 1 = max): one invocation per column walking down
// the rows, so a warp reads one contiguous stretch of a row at each step. Used for bias
// gradients (sum of dY over the batch).
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint op; uint rows; uint cols; uint inOff; uint outOff;
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint j = gl_GlobalInvocationID.x; j < p.cols; j += stride) {
        float acc = (p.op == 0u) ? 0.0 : uintBitsToFloat(0xff800000u);
        for (uint r = 0u; r < p.rows; ++r) {
            float v = src[p.inOff + r * p.cols + j];
            acc = (p.op == 0u) ? acc + v : max(acc, v);
        }
        dst[p.outOff + j] = acc;
    }
}
