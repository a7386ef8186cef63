#version 450
// dx = f'(x) * dy for the activations in activation.comp (op 0 = ReLU, 1 = GELU tanh).
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) readonly buffer DY { float dy[]; };
layout(std430, set = 0, binding = 2) writeonly buffer DX { float dx[]; };

layout(push_constant) uniform Params {
    uint op; uint count; uint xOff; uint dyOff; uint dxOff;
} p;

const float kSqrt2OverPi = 0.7978845608028654;
const float kCoeff = 0.044715;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        float v = x[p.xOff + i];
        float g = dy[p.dyOff + i];
        float d;
        if (p.op == 0u) {
            d = v > 0.0 ? g : 0.0;
        } else {
            float u = clamp(kSqrt2OverPi * (v + kCoeff * v * v * v), -10.0, 10.0);
            float t = tanh(u);
            float du = kSqrt2OverPi * (1.0 + 3.0 * kCoeff * v * v);
            d = g * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du);
        }
        dx[p.dxOff + i] = d;
    }
}
