#version 450
// x = alpha * x, in place.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) buffer X { float x[]; };

layout(push_constant) uniform Params {
    uint count; uint xOff; float alpha;
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride)
        x[p.xOff + i] = p.alpha * x[p.xOff + i];
}
