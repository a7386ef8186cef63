#version 450
// dW[k][c][r][s] = sum_{n,p,q} dOut[n][k][p][q] * in[n][c][p*sh - ph + r][q*sw - pw + s].
// Filters are small and the (n, p, q) sum is long, so one workgroup owns one filter element
// and the 64 invocations split the sum, finishing with a shared-memory tree.
layout(local_size_x = 64) in;

layout(std430, set = 0, binding = 0) readonly buffer In { float src[]; };
layout(std430, set = 0, binding = 1) readonly buffer DOut { float dout[]; };
layout(std430, set = 0, binding = 2) writeonly buffer DW { float dw[]; };

layout(push_constant) uniform Params {
    uint N; uint C; uint H; uint W; uint K; uint R; uint S; uint P; uint Q;
    uint strideH; uint strideW; uint padH; uint padW;
    uint inOff; uint dOutOff; uint dwOff;
} p;

shared float red[64];

void main() {
    uint lid = gl_LocalInvocationID.x;
    uint total = p.K * p.C * p.R * p.S;
    uint span = p.N * p.P * p.Q;
    uint e = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (e < total) {
        uint s = e % p.S;
        uint t = e / p.S;
        uint r = t % p.R; t /= p.R;
        uint c = t % p.C;
        uint k = t / p.C;
        float acc = 0.0;
        for (uint i = lid; i < span; i += 64u) {
            uint q = i % p.Q;
            uint u = i / p.Q;
            uint op = u % p.P;
            uint n = u / p.P;
            int h = int(op * p.strideH) - int(p.padH) + int(r);
            int w = int(q * p.strideW) - int(p.padW) + int(s);
            if (h < 0 || h >= int(p.H) || w < 0 || w >= int(p.W)) continue;
            acc += dout[p.dOutOff + ((n * p.K + k) * p.P + op) * p.Q + q]
                 * src[p.inOff + ((n * p.C + c) * p.H + uint(h)) * p.W + uint(w)];
        }
        red[lid] = acc;
        barrier();
        for (uint st = 32u; st > 0u; st >>= 1) {
            if (lid < st) red[lid] += red[lid + st];
            barrier();
        }
        if (lid == 0u) dw[p.dwOff + e] = red[0];
    }
}
