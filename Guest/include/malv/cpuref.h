/* CPU references the GPU tests compare kernels with (double accumulation). */
#ifndef MALV_CPUREF_H
#define MALV_CPUREF_H

#include <stdint.h>

/*
 * out = alpha * op(A) op(B) + beta * c (c is read only when beta != 0; out may be c);
 * op(A) m x k, op(B) k x n, row-major; transpose bit 0 transposes A, bit 1 B (VGPU_TRANSPOSE_*).
 */
void cpuref_sgemm(uint32_t m, uint32_t n, uint32_t k, uint32_t transpose, float alpha, float beta,
                  const float *a, const float *b, const float *c, float *out);

/* RESIZE_BILINEAR on `planes` planes of h x w floats into oh x ow, with half-pixel centres and
 * edge clamping, as the host's shader and the preprocess service compute it. */
void cpuref_resize_bilinear(uint32_t planes, uint32_t h, uint32_t w, uint32_t oh, uint32_t ow, const float *in, float *out);

#endif
