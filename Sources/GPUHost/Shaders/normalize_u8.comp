#version 450
// Decoded images (u8, N x H x W x C interleaved) to the f32 N x C x H x W tensor a model
// takes: out = (in * scale - mean[c]) / std[c]. Bytes are read out of 32-bit words because
// storage buffers of 8-bit types need an optional feature; the host rounds every buffer up to
// whole words so the last word read stays inside the allocation.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { uint words[]; };
layout(std430, set = 0, binding = 1) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint N; uint H; uint W; uint C;
    uint inByteOff; uint outOff;
    float scale;
    float mean[4];
    float stdev[4];
} p;

void main() {
    uint total = p.N * p.C * p.H * p.W;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint x = idx % p.W;
        uint t = idx / p.W;
        uint y = t % p.H; t /= p.H;
        uint c = t % p.C;
        uint n = t / p.C;
        uint byteIndex = p.inByteOff + ((n * p.H + y) * p.W + x) * p.C + c;
        uint v = (words[byteIndex >> 2] >> (8u * (byteIndex & 3u))) & 0xffu;
        dst[p.outOff + idx] = (float(v) * p.scale - p.mean[c]) / p.stdev[c];
    }
}
