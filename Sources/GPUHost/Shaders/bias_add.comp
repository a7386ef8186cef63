#version 450
// data[o][c][i] += bias[c] over an (outer, channels, inner) view: rows x features for dense
// layers (inner = 1), N x C x HW for convolutions.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) buffer Data { float data[]; };
layout(std430, set = 0, binding = 1) readonly buffer Bias { float bias[]; };

layout(push_constant) uniform Params {
    uint count; uint channels; uint inner;
    uint dataOff; uint biasOff;
} p;

void main() {
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint i = gl_GlobalInvocationID.x; i < p.count; i += stride) {
        uint ch = (i / p.inner) % p.channels;
        data[p.dataOff + i] += bias[p.biasOff + ch];
    }
}
