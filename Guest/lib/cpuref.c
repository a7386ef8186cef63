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

/* One axis of a bilinear sample with half-pixel centres, clamped to the edge: the two source
 * indices and the weight of the second. */
static void bilinear_axis(uint32_t out_index, float scale, uint32_t size, uint32_t *i0, uint32_t *i1, float *weight)
{
    float source = ((float)out_index + 0.5f) * scale - 0.5f;
    if (source < 0)
        source = 0;
    *i0 = (uint32_t)source;
    if (*i0 > size - 1)
        *i0 = size - 1;
    *i1 = *i0 + 1 < size ? *i0 + 1 : size - 1;
    *weight = source - (float)*i0;
}

void cpuref_resize_bilinear(uint32_t planes, uint32_t h, uint32_t w, uint32_t oh, uint32_t ow, const float *in, float *out)
{
    const float sy_scale = (float)h / (float)oh, sx_scale = (float)w / (float)ow;
    for (uint32_t pl = 0; pl < planes; pl++) {
        const float *base = in + pl * h * w;
        for (uint32_t y = 0; y < oh; y++) {
            uint32_t y0, y1;
            float ly;
            bilinear_axis(y, sy_scale, h, &y0, &y1, &ly);
            for (uint32_t x = 0; x < ow; x++) {
                uint32_t x0, x1;
                float lx;
                bilinear_axis(x, sx_scale, w, &x0, &x1, &lx);
                float v00 = base[y0 * w + x0], v01 = base[y0 * w + x1];
                float v10 = base[y1 * w + x0], v11 = base[y1 * w + x1];
                float top = v00 + (v01 - v00) * lx;
                float bottom = v10 + (v11 - v10) * lx;
                out[(pl * oh + y) * ow + x] = top + (bottom - top) * ly;
            }
        }
    }
}
