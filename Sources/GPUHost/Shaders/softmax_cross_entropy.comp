#version 450
// Per row: loss = logsumexp(x) - x[label]; grad = (softmax(x) - onehot(label)) * gradScale.
// A label outside [0, classes) cannot be rejected before dispatch (it is data), so it yields
// a NaN loss and a gradient without the one-hot term instead of an out-of-bounds access.
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) readonly buffer Logits { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer Labels { uint labels[]; };
layout(std430, set = 0, binding = 2) writeonly buffer Loss { float loss[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Grad { float grad[]; };

layout(push_constant) uniform Params {
    uint rows; uint classes;
    uint xOff; uint labelOff; uint lossOff; uint gradOff;
    float gradScale;
} p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row < p.rows) {
        uint base = row * p.classes;
        float m = uintBitsToFloat(0xff800000u);
        for (uint j = lid; j < p.classes; j += 64u) m = max(m, x[p.xOff + base + j]);
        red[lid] = m;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (lid < s) red[lid] = max(red[lid], red[lid + s]);
            barrier();
        }
        float rowMax = red[0];
        barrier();

        float sum = 0.0;
        for (uint j = lid; j < p.classes; j += 64u) sum += exp(x[p.xOff + base + j] - rowMax);
        red[lid] = sum;
        barrier();
        for (uint s = 32u; s > 0u; s >>= 1) {
            if (lid < s) red[lid] += red[lid + s];
            barrier();
        }
        float total = red[0];
        barrier();

        uint label = labels[p.labelOff + row];
        bool valid = label < p.classes;
        float inv = 1.0 / total;
        for (uint j = lid; j < p.classes; j += 64u) {
            float prob = exp(x[p.xOff + base + j] - rowMax) * inv;
            float target = (valid && j == label) ? 1.0 : 0.0;
            grad[p.gradOff + base + j] = (prob - target) * p.gradScale;
        }
        if (lid == 0u) {
            float logSumExp = rowMax + log(total);
            loss[p.lossOff + row] = valid ? logSumExp - x[p.xOff + base + label]
                                          : uintBitsToFloat(0x7fc00000u);
        }
    }
}
