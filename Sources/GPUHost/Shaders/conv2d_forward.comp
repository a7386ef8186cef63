#version 450
// Direct NCHW convolution, one output element per invocation (grid-stride):
// out[n][k][p][q] = bias[k] + sum_{c,r,s} in[n][c][p*sh - ph + r][q*sw - pw + s] * w[k][c][r][s]
// Taps that land in the padding contribute zero.
layout(local_size_x = 256) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) readonly buffer Wt { float wt[]; };
layout(std430, set = 0, binding = 2) readonly buffer Bias { float bias[]; };
layout(std430, set = 0, binding = 3) writeonly buffer Out { float dst[]; };

layout(push_constant) uniform Params {
    uint N; uint C; uint H; uint W; uint K; uint R; uint S; uint P; uint Q;
    uint strideH; uint strideW; uint padH; uint padW;
    uint hasBias; uint inOff; uint wOff; uint bOff; uint outOff;
} p;

void main() {
    uint total = p.N * p.K * p.P * p.Q;
    uint stride = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    for (uint idx = gl_GlobalInvocationID.x; idx < total; idx += stride) {
        uint q = idx % p.Q;
        uint t = idx / p.Q;
        uint op = t % p.P; t /= p.P;
        uint k = t % p.K;
        uint n = t / p.K;
        float acc = (p.hasBias != 0u) ? bias[p.bOff + k] : 0.0;
        int h0 = int(op * p.strideH) - int(p.padH);
        int w0 = int(q * p.strideW) - int(p.padW);
        for (uint c = 0u; c < p.C; ++c) {
            uint inBase = p.inOff + (n * p.C + c) * p.H * p.W;
            uint wBase = p.wOff + (k * p.C + c) * p.R * p.S;
            for (uint r = 0u; r < p.R; ++r) {
                int h = h0 + int(r);
                if (h < 0 || h >= int(p.H)) continue;
                for (uint s = 0u; s < p.S; ++s) {
                    int w = w0 + int(s);
                    if (w < 0 || w >= int(p.W)) continue;
                    acc += src[inBase + uint(h) * p.W + uint(w)] * wt[wBase + r * p.S + s];
                }
            }
        }
        dst[p.outOff + idx] = acc;
    }
}
