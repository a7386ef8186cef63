#version 450
// y = f(x); op 0 = ReLU, op 1 = GELU (tanh approximation, as PyTorch approximate='tanh').
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Y { float y[]; };

layout(push_constant) uniform Params {
    uint op; uint count; uint xOff; uint yOff;
} p;

const float kSqrt2OverPi = 0.7978845608028654;
const float kCoeff = 0.044715;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float v = x[p.xOff + i];
        float r;
        if (p.op == 0u) {
            r = max(v, 0.0);
        } else {
            // Clamped because some drivers build tanh from exp, which overflows to inf/inf = NaN;
            // tanh(10) already rounds to 1.0 in binary32.
            float u = clamp(kSqrt2OverPi * (v + kCoeff * v * v * v), -10.0, 10.0);
            r = 0.5 * v * (1.0 + tanh(u));
        }
        y[p.yOff + i] = r;
    }
}
