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

void cpuref_resize_bilinear(uint32_t planes, uint32_t h, uint32_t w, uint32_t oh, uint32_t ow, const float *in, float *out)
{
    const float sy_scale = (float)h / (float)oh, sx_scale = (float)w / (float)ow;
    for (uint32_t pl = 0; pl < planes; pl++) {
        const float *base = in + pl * h * w;
        for (uint32_t y = 0; y < oh; y++) {
            float sy = ((float)y + 0.5f) * sy_scale - 0.5f;
            if (sy < 0)
                sy = 0;
            uint32_t y0 = (uint32_t)sy;
            if (y0 > h - 1)
                y0 = h - 1;
            uint32_t y1 = y0 + 1 < h ? y0 + 1 : h - 1;
            float ly = sy - (float)y0;
            for (uint32_t x = 0; x < ow; x++) {
                float sx = ((float)x + 0.5f) * sx_scale - 0.5f;
                if (sx < 0)
                    sx = 0;
                uint32_t x0 = (uint32_t)sx;
                if (x0 > w - 1)
                    x0 = w - 1;
                uint32_t x1 = x0 + 1 < w ? x0 + 1 : w - 1;
                float lx = sx - (float)x0;
                float v00 = base[y0 * w + x0], v01 = base[y0 * w + x1];
                float v10 = base[y1 * w + x0], v11 = base[y1 * w + x1];
                float top = v00 + (v01 - v00) * lx;
                float bottom = v10 + (v11 - v10) * lx;
                out[(pl * oh + y) * ow + x] = top + (bottom - top) * ly;
            }
        }
    }
}
