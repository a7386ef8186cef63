/*
 * The CPU reference of the MLaaS `preprocess` pipeline (docs/mlaas.md,
 * "preprocess"): the same draws and the same f32 arithmetic, in the same
 * order, as the host's GPUHost kernels (Sources/GPUHost/CPU/CPUReference+
 * Preprocess.swift), so the batches the host writes into a context's buffers
 * can be checked value for value. lib/preprocess_ref.c; test=preprocess uses it.
 */
#ifndef MALV_PREPROCESS_H
#define MALV_PREPROCESS_H

#include <stdbool.h>
#include <stdint.h>

struct pp_pipeline {
    uint32_t records;               /* records in the dataset range */
    uint32_t height, width, channels;   /* stored images (u8, HWC) */
    uint32_t resize_h, resize_w;    /* = height, width for none */
    uint32_t crop_h, crop_w;        /* 0 for none */
    uint32_t padding;               /* of the crop */
    bool flip;
    float mean[4], std[4];          /* one per channel */
    uint64_t seed;
    uint32_t batch;
};

struct pp_draw {
    uint32_t top, left;
    bool flip;
};

static inline uint32_t pp_out_h(const struct pp_pipeline *p) { return p->crop_h ? p->crop_h : p->resize_h; }
static inline uint32_t pp_out_w(const struct pp_pipeline *p) { return p->crop_w ? p->crop_w : p->resize_w; }
/* f32 values of one output image (NCHW: channels x out_h x out_w). */
static inline uint32_t pp_out_values(const struct pp_pipeline *p)
{
    return p->channels * pp_out_h(p) * pp_out_w(p);
}

/* The records' order in `epoch` (`order` holds p->records entries). */
void pp_permutation(const struct pp_pipeline *p, uint64_t epoch, uint32_t *order);
/* The crop offset and flip of the image at `position` of `epoch`. */
struct pp_draw pp_draw(const struct pp_pipeline *p, uint64_t epoch, uint64_t position);
/* Floats of scratch pp_image needs. */
uint32_t pp_scratch_values(const struct pp_pipeline *p);
/* One image: `pixels` (height x width x channels u8) to `out` (pp_out_values f32). */
void pp_image(const struct pp_pipeline *p, const uint8_t *pixels, struct pp_draw d, float *scratch, float *out);

#endif
