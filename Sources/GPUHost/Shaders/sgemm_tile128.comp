#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha * op(A) * op(B) + beta * C, row-major, op() optionally transposes: the
// large-matrix sgemm (see SGEMMVariant in ShaderDispatch.swift for when it is chosen).
//
// 128x128 output tile per workgroup, 8-deep K slices, 256 invocations each holding an 8x8
// micro-tile (64 accumulators) in registers: 64 FMAs per four vec4 reads from shared memory,
// and a tile reads each element of A and B from global memory 128 times less often than a
// naive kernel. 8-deep slices keep shared memory at 8.25 KiB (two workgroups fit per SM
// where registers allow) and each invocation at one quad of A and one of B per slice.
#define GROUPS_M 2u
#define GROUPS_N 2u
#define TILE_K 8u
#include "sgemm_tiled.glsl"
