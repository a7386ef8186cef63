/*
 * The CPU reference of the MLaaS `preprocess` pipeline (malv/preprocess.h).
 * Every formula is the host's, operation for operation in f32: a reordering
 * or a wider intermediate would change the last bit, and the check is exact.
 */
#include "malv/cpuref.h"
#include "malv/preprocess.h"
#include "malv/splitmix.h"

/* The draws use SplitMix64, as Sources/PreprocessDraws/Augmentation.swift. */

#define EPOCH_STRIDE 0xD1B54A32D192ED03ull
#define POSITION_STRIDE 0x8CB92BA72F3D8DD7ull

void pp_permutation(const struct pp_pipeline *p, uint64_t epoch, uint32_t *order)
{
    for (uint32_t i = 0; i < p->records; i++)
        order[i] = i;
    uint64_t state = p->seed ^ (epoch * EPOCH_STRIDE);
    for (uint32_t i = p->records - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(splitmix64_next(&state) % (uint64_t)(i + 1));
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}

struct pp_draw pp_draw(const struct pp_pipeline *p, uint64_t epoch, uint64_t position)
{
    uint64_t state = p->seed ^ (epoch * EPOCH_STRIDE) ^ ((position + 1) * POSITION_STRIDE);
    struct pp_draw d = { 0, 0, false };
    if (p->crop_h) {
        d.top = (uint32_t)(splitmix64_next(&state) % (uint64_t)(p->resize_h + 2 * p->padding - p->crop_h + 1));
        d.left = (uint32_t)(splitmix64_next(&state) % (uint64_t)(p->resize_w + 2 * p->padding - p->crop_w + 1));
    }
    if (p->flip)
        d.flip = splitmix64_next(&state) & 1;
    return d;
}

uint32_t pp_scratch_values(const struct pp_pipeline *p)
{
    return p->channels * (p->height * p->width + p->resize_h * p->resize_w + pp_out_h(p) * pp_out_w(p));
}

void pp_image(const struct pp_pipeline *p, const uint8_t *pixels, struct pp_draw d, float *scratch, float *out)
{
    const uint32_t c_n = p->channels, h = p->height, w = p->width;
    const uint32_t rh = p->resize_h, rw = p->resize_w, oh = pp_out_h(p), ow = pp_out_w(p);
    const float scale = 1.0f / 255.0f;
    float *normalized = scratch;                    /* C x H x W */
    float *resized = normalized + c_n * h * w;      /* C x RH x RW */
    float *cropped = resized + c_n * rh * rw;       /* C x OH x OW */

    /* NORMALIZE_U8: HWC u8 -> CHW f32, (v * scale - mean) / std. */
    for (uint32_t c = 0; c < c_n; c++)
        for (uint32_t y = 0; y < h; y++)
            for (uint32_t x = 0; x < w; x++) {
                float v = (float)pixels[(y * w + x) * c_n + c];
                normalized[(c * h + y) * w + x] = (v * scale - p->mean[c]) / p->std[c];
            }

    /* RESIZE_BILINEAR (half-pixel centres), skipped when the size stays. */
    const float *source = normalized;
    if (rh != h || rw != w) {
        cpuref_resize_bilinear(c_n, h, w, rh, rw, normalized, resized);
        source = resized;
    }

    /* CROP inside `padding` of the normalised black, then FLIP_HORIZONTAL. */
    float *target = d.flip ? cropped : out;
    for (uint32_t c = 0; c < c_n; c++) {
        const float black = (0.0f * scale - p->mean[c]) / p->std[c];
        for (uint32_t y = 0; y < oh; y++)
            for (uint32_t x = 0; x < ow; x++) {
                int32_t row = (int32_t)(d.top + y) - (int32_t)(p->crop_h ? p->padding : 0);
                int32_t col = (int32_t)(d.left + x) - (int32_t)(p->crop_h ? p->padding : 0);
                bool inside = row >= 0 && row < (int32_t)rh && col >= 0 && col < (int32_t)rw;
                target[(c * oh + y) * ow + x] = inside ? source[(c * rh + (uint32_t)row) * rw + (uint32_t)col] : black;
            }
    }
    if (d.flip)
        for (uint32_t row = 0; row < c_n * oh; row++)
            for (uint32_t x = 0; x < ow; x++)
                out[row * ow + x] = cropped[row * ow + (ow - 1 - x)];
}
