// The body of every sgemm variant (sgemm.comp, sgemm_tile128.comp), included after the
// variant defines its tile shape:
//
//   GROUPS_M, GROUPS_N  1 or 2: how many 4-wide row (column) groups each invocation owns.
//                       The workgroup is 16 x 16 invocations, so the output tile is
//                       (64 * GROUPS_M) x (64 * GROUPS_N) and each invocation holds a
//                       (4 * GROUPS_M) x (4 * GROUPS_N) micro-tile of C in registers.
//   TILE_K              depth of the K slice staged in shared memory per step; chosen so that
//                       TILE_M * TILE_K == TILE_N * TILE_K == 1024, i.e. each invocation
//                       fetches exactly one 4-element quad of A and one of B per step.
//
// C = alpha * op(A) * op(B) + beta * C, row-major, op() optionally transposes; aOff/bOff/cOff
// are element offsets into the bound buffers; any m, n, k >= 1 (every load and store is
// bounds-checked). Same contract as CPUReference.sgemm.
//
// Why it is fast (the usual CUDA SGEMM ladder, in Vulkan GLSL):
// - Register blocking: an invocation's micro-tile is fed per depth step by GROUPS_M + GROUPS_N
//   vec4 reads from shared memory (8x8 micro-tile: 64 FMAs per 4 reads), so the loop is bound
//   by FMA issue, not by shared-memory bandwidth.
// - A is stored transposed in shared memory (tileA[depth][row]), so both operands are read as
//   vec4 along the micro-tile. The micro-tile's groups sit 64 apart (rows ty*4.. and
//   64+ty*4..), so invocations next to each other read consecutive vec4s: no bank conflicts.
// - Each 32-wide subgroup covers 8 x 4 invocations of the 16 x 16 grid (not 16 x 2), so one
//   vec4 read of a depth step touches 8 distinct vec4s of B and 4 of A: one shared-memory
//   wavefront each, where 16 x 2 would need two for B.
// - Rows of the shared tiles are padded by one vec4: the transposing stores (A not
//   transposed, B transposed) of neighbouring invocations then land in different banks
//   (at worst two to a bank, for 64x64 tiles' A).
// - The next K slice is fetched from global memory into registers before the FMAs on the
//   current one, so its latency hides behind the arithmetic (one shared buffer, two barriers
//   per step: both variants stay within Vulkan's guaranteed 16 KiB of shared memory).
// - Global loads are vec4 when an operand's offset and leading dimension are multiples of 4
//   (then a quad never straddles a row end, so a quad is wholly in or out of bounds); other
//   operands take four bounds-checked scalar loads of the same quad. The choice is per
//   operand and uniform across the dispatch, so the branch costs nothing.
//
// One output tile per workgroup, numbered across a 2-D group grid so any m, n fits the device's
// per-dimension group limit. The bound is uniform per workgroup, keeping the barriers in
// uniform control flow. (Not a grid-stride loop: Mesa 22.3 lavapipe miscompiles barriers inside
// a loop whose start depends on the workgroup id. The K loop below starts at 0.)

// Every loop but the K loop has a constant trip count; [[unroll]] asks for it to be unrolled
// so the micro-tile and the quads live in registers rather than indexed arrays.
#extension GL_EXT_control_flow_attributes : require

layout(local_size_x = 16, local_size_y = 16) in;

// Each operand is bound once and viewed both as floats and as vec4s (aliasing views of one
// descriptor); a dispatch reads an operand through only one of them.
layout(std430, set = 0, binding = 0) readonly buffer A { float a[]; };
layout(std430, set = 0, binding = 0) readonly buffer A4 { vec4 a4[]; };
layout(std430, set = 0, binding = 1) readonly buffer B { float b[]; };
layout(std430, set = 0, binding = 1) readonly buffer B4 { vec4 b4[]; };
layout(std430, set = 0, binding = 2) buffer C { float c[]; };
layout(std430, set = 0, binding = 2) buffer C4 { vec4 c4[]; };

layout(push_constant) uniform Params {
    uint m; uint n; uint k;
    uint transA; uint transB;
    uint aOff; uint bOff; uint cOff;
    float alpha; float beta;
} p;

const uint TILE_M = 64u * GROUPS_M;
const uint TILE_N = 64u * GROUPS_N;
const uint MICRO_M = 4u * GROUPS_M;
// Quads of A (and of B) per slice, per invocation: 1 for both shipped shapes.
const uint QUADS_A = TILE_M * TILE_K / 1024u;
const uint QUADS_B = TILE_N * TILE_K / 1024u;

// [depth][row / 4], one padding vec4 per depth row (see above).
shared vec4 tileA[TILE_K][TILE_M / 4u + 1u];
shared vec4 tileB[TILE_K][TILE_N / 4u + 1u];

uint tid;
uint rowBase;
uint colBase;
bool vecA;
bool vecB;

// Where quad `v` of op(A)'s slice lies in it. Not transposed, A is m x k and the quad runs along
// depth (row r, depths d..d+3); transposed, A is k x m and it runs along rows (rows r..r+3,
// depth d).
void quadOfA(uint v, out uint r, out uint d) {
    if (p.transA == 0u) {
        r = v / (TILE_K / 4u);
        d = (v % (TILE_K / 4u)) * 4u;
    } else {
        d = v / (TILE_M / 4u);
        r = (v % (TILE_M / 4u)) * 4u;
    }
}

vec4 loadA(uint v, uint kk) {
    uint r, d;
    quadOfA(v, r, d);
    uint row = rowBase + r;
    uint depth = kk + d;
    vec4 quad = vec4(0.0);
    if (p.transA == 0u) {
        uint base = p.aOff + row * p.k + depth;
        if (vecA) {
            if (row < p.m && depth < p.k) quad = a4[base / 4u];
        } else if (row < p.m) {
            [[unroll]] for (uint i = 0u; i < 4u; ++i)
                if (depth + i < p.k) quad[i] = a[base + i];
        }
    } else {
        uint base = p.aOff + depth * p.m + row;
        if (vecA) {
            if (row < p.m && depth < p.k) quad = a4[base / 4u];
        } else if (depth < p.k) {
            [[unroll]] for (uint i = 0u; i < 4u; ++i)
                if (row + i < p.m) quad[i] = a[base + i];
        }
    }
    return quad;
}

void storeA(uint v, vec4 quad) {
    uint r, d;
    quadOfA(v, r, d);
    if (p.transA == 0u) {
        [[unroll]] for (uint i = 0u; i < 4u; ++i) tileA[d + i][r >> 2][r & 3u] = quad[i];
    } else {
        tileA[d][r >> 2] = quad;
    }
}

// Where quad `v` of op(B)'s slice lies in it. Not transposed, B is k x n and the quad runs along columns
// (depth d, columns cl..cl+3); transposed, B is n x k and it runs along depth.
void quadOfB(uint v, out uint d, out uint cl) {
    if (p.transB == 0u) {
        d = v / (TILE_N / 4u);
        cl = (v % (TILE_N / 4u)) * 4u;
    } else {
        cl = v / (TILE_K / 4u);
        d = (v % (TILE_K / 4u)) * 4u;
    }
}

vec4 loadB(uint v, uint kk) {
    uint d, cl;
    quadOfB(v, d, cl);
    uint col = colBase + cl;
    uint depth = kk + d;
    vec4 quad = vec4(0.0);
    if (p.transB == 0u) {
        uint base = p.bOff + depth * p.n + col;
        if (vecB) {
            if (col < p.n && depth < p.k) quad = b4[base / 4u];
        } else if (depth < p.k) {
            [[unroll]] for (uint i = 0u; i < 4u; ++i)
                if (col + i < p.n) quad[i] = b[base + i];
        }
    } else {
        uint base = p.bOff + col * p.k + depth;
        if (vecB) {
            if (col < p.n && depth < p.k) quad = b4[base / 4u];
        } else if (col < p.n) {
            [[unroll]] for (uint i = 0u; i < 4u; ++i)
                if (depth + i < p.k) quad[i] = b[base + i];
        }
    }
    return quad;
}

void storeB(uint v, vec4 quad) {
    uint d, cl;
    quadOfB(v, d, cl);
    if (p.transB == 0u) {
        tileB[d][cl >> 2] = quad;
    } else {
        [[unroll]] for (uint i = 0u; i < 4u; ++i) tileB[d + i][cl >> 2][cl & 3u] = quad[i];
    }
}

void main() {
    tid = gl_LocalInvocationIndex;
    // Micro-tile position (tx, ty) in the 16 x 16 grid: lanes 0-31 of a subgroup form an
    // 8 x 4 block, the 8 subgroups a 2 x 4 arrangement of blocks. Only speed depends on the
    // subgroup size; any size gives the same result.
    uint lane = tid & 31u;
    uint block = tid >> 5u;
    uint tx = (block & 1u) * 8u + (lane & 7u);
    uint ty = (block >> 1u) * 4u + (lane >> 3u);
    uint tilesX = (p.n + TILE_N - 1u) / TILE_N;
    uint tiles = tilesX * ((p.m + TILE_M - 1u) / TILE_M);
    uint tile = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (tile < tiles) {
        rowBase = (tile / tilesX) * TILE_M;
        colBase = (tile % tilesX) * TILE_N;
        // A quad along a dimension whose length is a multiple of 4, starting at a multiple
        // of 4, is wholly inside or wholly outside the matrix.
        // Leading dimensions: A is m x k (k) or, transposed, k x m (m); B is k x n (n) or,
        // transposed, n x k (k).
        vecA = ((p.aOff | (p.transA == 0u ? p.k : p.m)) & 3u) == 0u;
        vecB = ((p.bOff | (p.transB == 0u ? p.n : p.k)) & 3u) == 0u;

        vec4 acc[MICRO_M][GROUPS_N];
        [[unroll]] for (uint i = 0u; i < MICRO_M; ++i)
            [[unroll]] for (uint j = 0u; j < GROUPS_N; ++j)
                acc[i][j] = vec4(0.0);

        vec4 nextA[QUADS_A];
        vec4 nextB[QUADS_B];
        [[unroll]] for (uint l = 0u; l < QUADS_A; ++l) nextA[l] = loadA(tid + 256u * l, 0u);
        [[unroll]] for (uint l = 0u; l < QUADS_B; ++l) nextB[l] = loadB(tid + 256u * l, 0u);
        [[unroll]] for (uint l = 0u; l < QUADS_A; ++l) storeA(tid + 256u * l, nextA[l]);
        [[unroll]] for (uint l = 0u; l < QUADS_B; ++l) storeB(tid + 256u * l, nextB[l]);
        barrier();

        for (uint kk = 0u; kk < p.k; kk += TILE_K) {
            bool more = kk + TILE_K < p.k;
            // Issue the next slice's global loads now; they are first needed after the FMAs.
            if (more) {
                [[unroll]] for (uint l = 0u; l < QUADS_A; ++l) nextA[l] = loadA(tid + 256u * l, kk + TILE_K);
                [[unroll]] for (uint l = 0u; l < QUADS_B; ++l) nextB[l] = loadB(tid + 256u * l, kk + TILE_K);
            }

            [[unroll]] for (uint q = 0u; q < TILE_K; ++q) {
                vec4 av[GROUPS_M];
                vec4 bv[GROUPS_N];
                [[unroll]] for (uint g = 0u; g < GROUPS_M; ++g) av[g] = tileA[q][g * 16u + ty];
                [[unroll]] for (uint g = 0u; g < GROUPS_N; ++g) bv[g] = tileB[q][g * 16u + tx];
                [[unroll]] for (uint g = 0u; g < GROUPS_M; ++g)
                    [[unroll]] for (uint i = 0u; i < 4u; ++i)
                        [[unroll]] for (uint j = 0u; j < GROUPS_N; ++j)
                            acc[g * 4u + i][j] += av[g][i] * bv[j];
            }
            barrier();
            if (more) {
                [[unroll]] for (uint l = 0u; l < QUADS_A; ++l) storeA(tid + 256u * l, nextA[l]);
                [[unroll]] for (uint l = 0u; l < QUADS_B; ++l) storeB(tid + 256u * l, nextB[l]);
            }
            barrier();
        }

        // Rows g*64 + ty*4 + i, columns h*64 + tx*4 .. +3 of the tile. (No break/continue:
        // they would keep these loops from unrolling.)
        bool vecC = ((p.cOff | p.n) & 3u) == 0u;
        [[unroll]] for (uint g = 0u; g < GROUPS_M; ++g) {
            [[unroll]] for (uint i = 0u; i < 4u; ++i) {
                uint row = rowBase + g * 64u + ty * 4u + i;
                [[unroll]] for (uint h = 0u; h < GROUPS_N; ++h) {
                    uint col = colBase + h * 64u + tx * 4u;
                    if (row < p.m && col < p.n) {
                        vec4 value = p.alpha * acc[g * 4u + i][h];
                        uint idx = p.cOff + row * p.n + col;
                        // BLAS semantics: beta == 0 means C is write-only, so stale NaNs never
                        // leak in.
                        if (vecC) {
                            if (p.beta != 0.0) value += p.beta * c4[idx / 4u];
                            c4[idx / 4u] = value;
                        } else {
                            [[unroll]] for (uint j = 0u; j < 4u; ++j) {
                                if (col + j < p.n) {
                                    float prior = (p.beta == 0.0) ? 0.0 : p.beta * c[idx + j];
                                    c[idx + j] = value[j] + prior;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
