#include "malv/cpuref.h"

void cpuref_sgemm(uint32_t m, uint32_t n, uint32_t k, uint32_t transpose, float alpha, float beta,
                  const float *a, const float *b, const float *c, float *out)
{
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            double acc = 0;
            for (uint32_t q = 0; q < k; q++) {
                float av = (transpose & 1) ? a[q * m + i] : a[i * k + q];
                float bv = (transpose & 2) ? b[j * k + q] : b[q * n + j];
                acc += (double)av * bv;
            }
            out[i * n + j] = (float)(alpha * acc + (beta == 0 ? 0 : (double)beta * c[i * n + j]));
        }
}
