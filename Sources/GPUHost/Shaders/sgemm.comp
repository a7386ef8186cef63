#version 450
// C = alpha * op(A) * op(B) + beta * C, row-major, op() optionally transposes.
// 64x64 output tile per workgroup, 16-deep K slices staged in shared memory; each of the
// 256 invocations accumulates a 4x4 block strided by 16 so neighbouring invocations read
// neighbouring shared-memory words (no bank conflicts) and global loads stay coalesced.
layout(local_size_x = 16, local_size_y = 16) in;

layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };

layout(push_constant) uniform Params {
    uint m; uint n; uint k;
    uint transA; uint transB;
    uint aOff; uint bOff; uint cOff;
    float alpha; float beta;
} p;

const uint BM = 64u;
const uint BN = 64u;
const uint BK = 16u;

shared float As[BK][BM];
shared float Bs[BK][BN];

void main() {
    uint tx = gl_LocalInvocationID.x;
    uint ty = gl_LocalInvocationID.y;
    uint tid = ty * 16u + tx;
    // One output tile per workgroup, numbered across a 2-D group grid so any m, n fits the
    // device's per-dimension group limit. The bound is uniform per workgroup, keeping the
    // barriers in uniform control flow. (Not a grid-stride loop: Mesa 22.3 lavapipe
    // miscompiles barriers inside a loop whose start depends on the workgroup id.)
    uint tilesX = (p.n + BN - 1u) / BN;
    uint tiles = tilesX * ((p.m + BM - 1u) / BM);
    uint tile = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (tile < tiles) {
        uint rowBase = (tile / tilesX) * BM;
        uint colBase = (tile % tilesX) * BN;

        float acc[4][4];
        for (uint i = 0u; i < 4u; ++i)
            for (uint j = 0u; j < 4u; ++j)
                acc[i][j] = 0.0;

        for (uint kk = 0u; kk < p.k; kk += BK) {
            for (uint l = 0u; l < 4u; ++l) {
                uint e = tid + 256u * l;
                // A tile: op(A) rows [rowBase, +BM), depth [kk, +BK).
                uint ar, ac;
                if (p.transA == 0u) { ar = e / BK; ac = e % BK; } else { ac = e / BM; ar = e % BM; }
                uint gr = rowBase + ar;
                uint gk = kk + ac;
                float av = 0.0;
                if (gr < p.m && gk < p.k)
                    av = (p.transA == 0u) ? a[p.aOff + gr * p.k + gk] : a[p.aOff + gk * p.m + gr];
                As[ac][ar] = av;

                // B tile: op(B) depth [kk, +BK), columns [colBase, +BN).
                uint br, bc;
                if (p.transB == 0u) { br = e / BN; bc = e % BN; } else { bc = e / BK; br = e % BK; }
                uint gc = colBase + bc;
                uint gkb = kk + br;
                float bv = 0.0;
                if (gc < p.n && gkb < p.k)
                    bv = (p.transB == 0u) ? b[p.bOff + gkb * p.n + gc] : b[p.bOff + gc * p.k + gkb];
                Bs[br][bc] = bv;
            }
            barrier();

            for (uint q = 0u; q < BK; ++q) {
                float av[4];
                float bv[4];
                for (uint i = 0u; i < 4u; ++i) av[i] = As[q][ty + 16u * i];
                for (uint j = 0u; j < 4u; ++j) bv[j] = Bs[q][tx + 16u * j];
                for (uint i = 0u; i < 4u; ++i)
                    for (uint j = 0u; j < 4u; ++j)
                        acc[i][j] += av[i] * bv[j];
            }
            barrier();
        }

        for (uint i = 0u; i < 4u; ++i) {
            uint row = rowBase + ty + 16u * i;
            if (row >= p.m) continue;
            for (uint j = 0u; j < 4u; ++j) {
                uint col = colBase + tx + 16u * j;
                if (col >= p.n) continue;
                uint idx = p.cOff + row * p.n + col;
                // BLAS semantics: beta == 0 means C is write-only, so stale NaNs never leak in.
                float prior = (p.beta == 0.0) ? 0.0 : p.beta * c[idx];
                c[idx] = p.alpha * acc[i][j] + prior;
            }
        }
    }
}
