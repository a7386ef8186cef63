#version 450
// y = alpha * x + y (an SGD step is alpha = -learning rate, x = gradient, y = weights).
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer X { float x[]; };
layout(std430, set = 0, binding = 1) buffer Y { float y[]; };

layout(push_constant) uniform Params {
    uint count; uint xOff; uint yOff; float alpha;
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride)
        y[p.yOff + i] = p.alpha * x[p.xOff + i] + y[p.yOff + i];
}
