#version 450
#extension GL_GOOGLE_include_directive : require
// C = alpha * op(A) * op(B) + beta * C, row-major, op() optionally transposes: the general
// sgemm, chosen for every shape that gives too few 128x128 tiles to fill a large GPU
// (see SGEMMVariant in ShaderDispatch.swift).
//
// 64x64 output tile per workgroup, 16-deep K slices, 256 invocations each holding a 4x4
// micro-tile. At 512^3 this is 64 workgroups where the 128x128 variant would give only 16 for
// an H200's 132 SMs; four times the workgroups outweighs the lower FMA-per-read ratio
// (16 FMAs per two vec4 reads from shared memory). 16-deep slices keep each invocation at
// one quad of A and one of B per slice.
#define GROUPS_M 1u
#define GROUPS_N 1u
#define TILE_K 16u
#include "sgemm_tiled.glsl"
