#version 450
// dIn = conv2d_forward^T(dOut): one input element per invocation gathers every (k, r, s)
// whose output position p = (h + ph - r) / sh lands exactly on the stride grid.
// Gathering (not scattering) keeps the kernel free of atomics.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer DOut { float dout[]; };
layout(std430, set = 0, binding = 1) readonly buffer Wt { float wt[]; };
layout(std430, set = 0, binding = 2) writeonly buffer DIn { float din[]; };

layout(push_constant) uniform Params {
    uint N; uint C; uint H; uint W; uint K; uint R; uint S; uint P; uint Q;
    uint strideH; uint strideW; uint padH; uint padW;
    uint dOutOff; uint wOff; uint dInOff;
} p;

void main() {
    uint total = p.N * p.C * p.H * p.W;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint w = idx % p.W;
        uint t = idx / p.W;
        uint h = t % p.H; t /= p.H;
        uint c = t % p.C;
        uint n = t / p.C;
        float acc = 0.0;
        for (uint r = 0u; r < p.R; ++r) {
            int ph = int(h) + int(p.padH) - int(r);
            if (ph < 0 || (uint(ph) % p.strideH) != 0u) continue;
            uint op = uint(ph) / p.strideH;
            if (op >= p.P) continue;
            for (uint s = 0u; s < p.S; ++s) {
                int qw = int(w) + int(p.padW) - int(s);
                if (qw < 0 || (uint(qw) % p.strideW) != 0u) continue;
                uint q = uint(qw) / p.strideW;
                if (q >= p.Q) continue;
                for (uint k = 0u; k < p.K; ++k) {
                    acc += dout[p.dOutOff + ((n * p.K + k) * p.P + op) * p.Q + q]
                         * wt[p.wOff + ((k * p.C + c) * p.R + r) * p.S + s];
                }
            }
        }
        din[p.dInOff + idx] = acc;
    }
}
