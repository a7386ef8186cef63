/*
 * The guest's stream encoders, run on the host: records one command of every
 * opcode (and both variants of each flag: transposes, optional bias operands,
 * reduction op and axis, channel counts of NORMALIZE_U8) through
 * Guest/lib/vgpu_stream.c, finishes the stream and writes its bytes to the
 * file named by argv[1].
 *
 * ComputeStreamAgreementTests.swift builds this with the host's gcc, encodes
 * the same commands with the tests' StreamBuilder, and decodes these bytes
 * with the VMM's ComputeStream: the values below are mirrored there, so change
 * both together. Every field has a distinct non-zero value (where the protocol
 * allows one), so that a swapped or dropped field shows.
 */
#include <stdio.h>
#include <stdlib.h>

#include "malv/vgpu.h"

static struct vgpu_ref R(uint32_t resource_id, uint32_t length, uint64_t offset)
{
    return (struct vgpu_ref){ .resource_id = resource_id, .length = length, .offset = offset };
}

static int failures;

static void check(bool recorded, const char *what)
{
    if (!recorded) {
        fprintf(stderr, "stream_golden: %s was not recorded\n", what);
        failures++;
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUTPUT\n", argv[0]);
        return 2;
    }
    static uint8_t buffer[16384] __attribute__((aligned(64)));
    struct vgpu_stream s;
    if (!vgpu_stream_init_at(&s, buffer, sizeof buffer)) {
        fprintf(stderr, "stream_golden: vgpu_stream_init_at failed\n");
        return 1;
    }

    /* batch, in_channels, height, width, out_channels, kernel_h, kernel_w, stride_y, stride_x, pad_y, pad_x */
    const struct vgpu_conv_shape shape_a = { 2, 3, 83, 89, 5, 7, 9, 11, 13, 15, 17 };
    const struct vgpu_conv_shape shape_b = { 4, 6, 97, 101, 8, 10, 12, 14, 16, 18, 20 };

    check(vgpu_sgemm(&s, 3, 5, 7, VGPU_TRANSPOSE_A, 1.5f, -0.25f, R(101, 84, 0x40), R(102, 140, 0x80),
                     R(103, 60, 0x1000000c0ull)), "sgemm (transpose A)");
    check(vgpu_sgemm(&s, 9, 11, 13, VGPU_TRANSPOSE_B, 2.5f, 0.75f, R(201, 468, 0x44), R(202, 572, 0x88),
                     R(203, 396, 0x2000000cc0ull)), "sgemm (transpose B)");
    check(vgpu_bias_add(&s, 17, 19, 23, R(301, 1024, 0x140), R(302, 76, 0x180)), "bias_add");
    check(vgpu_gelu(&s, 29, R(401, 116, 0x1c0), R(402, 120, 0x200)), "gelu");
    check(vgpu_relu(&s, 31, R(501, 124, 0x240), R(502, 128, 0x280)), "relu");
    check(vgpu_activation_backward(&s, VGPU_GELU, 37, R(601, 148, 0x2c0), R(602, 152, 0x300), R(603, 156, 0x340)),
          "activation_backward");
    check(vgpu_softmax(&s, 41, 43, R(701, 164, 0x380), R(702, 168, 0x3c0)), "softmax");
    check(vgpu_softmax_xent(&s, 47, 53, 0.125f, R(801, 172, 0x400), R(802, 176, 0x440), R(803, 180, 0x480),
                            R(804, 184, 0x4c0)), "softmax_xent");
    check(vgpu_reduce(&s, VGPU_MAX, VGPU_PER_ROW, 59, 61, R(901, 188, 0x500), R(902, 192, 0x540)),
          "reduce (max, per row)");
    check(vgpu_reduce(&s, VGPU_SUM, VGPU_PER_COLUMN, 67, 71, R(1001, 196, 0x580), R(1002, 200, 0x5c0)),
          "reduce (sum, per column)");
    check(vgpu_axpy(&s, 73, -3.5f, R(1101, 204, 0x600), R(1102, 208, 0x640)), "axpy");
    check(vgpu_scale(&s, 79, 6.25f, R(1201, 212, 0x680)), "scale");

    struct vgpu_ref bias = R(1303, 224, 0x740);
    check(vgpu_conv2d_forward(&s, &shape_a, R(1301, 216, 0x6c0), R(1302, 220, 0x700), &bias, R(1304, 228, 0x780)),
          "conv2d_forward (bias)");
    check(vgpu_conv2d_forward(&s, &shape_b, R(1401, 232, 0x7c0), R(1402, 236, 0x800), NULL, R(1404, 240, 0x840)),
          "conv2d_forward (no bias)");
    check(vgpu_conv2d_backward_data(&s, &shape_a, R(1501, 244, 0x880), R(1502, 248, 0x8c0), R(1503, 252, 0x900)),
          "conv2d_backward_data");
    struct vgpu_ref bias_grad = R(1604, 268, 0xa00);
    check(vgpu_conv2d_backward_filter(&s, &shape_b, R(1601, 256, 0x940), R(1602, 260, 0x980), R(1603, 264, 0x9c0),
                                      &bias_grad), "conv2d_backward_filter (bias gradient)");
    check(vgpu_conv2d_backward_filter(&s, &shape_a, R(1701, 272, 0xa40), R(1702, 276, 0xa80), R(1703, 280, 0xac0),
                                      NULL), "conv2d_backward_filter (no bias gradient)");

    const float mean4[4] = { 0.5f, 0.375f, 0.25f, 0.125f }, std4[4] = { 2.0f, 4.0f, 8.0f, 16.0f };
    check(vgpu_normalize_u8(&s, 103, 107, 109, 4, 0.00390625f, mean4, std4, R(1801, 113, 0xb01),
                            R(1802, 284, 0x300000b40ull)), "normalize_u8 (4 channels)");
    /* Two channels: the encoder must zero the mean/std slots past them. */
    const float mean2[4] = { 0.625f, 0.875f, 1.5f, 1.75f }, std2[4] = { 3.0f, 5.0f, 7.0f, 9.0f };
    check(vgpu_normalize_u8(&s, 127, 131, 137, 2, 0.0078125f, mean2, std2, R(1901, 139, 0xb81), R(1902, 288, 0xbc0)),
          "normalize_u8 (2 channels)");
    check(vgpu_crop(&s, 149, 151, 157, 163, 167, 173, 179, 181, R(2001, 292, 0xc00), R(2002, 296, 0xc40)), "crop");
    check(vgpu_flip_horizontal(&s, 191, 193, 197, 199, R(2101, 300, 0xc80), R(2102, 304, 0xcc0)),
          "flip_horizontal");
    check(vgpu_resize_bilinear(&s, 211, 223, 227, 229, 233, 239, R(2201, 308, 0xd00), R(2202, 312, 0xd40)),
          "resize_bilinear");
    /* COPY needs equal lengths: the ids and offsets differ. */
    check(vgpu_copy(&s, R(2301, 316, 0xd80), R(2302, 316, 0x400000dc0ull)), "copy");
    check(vgpu_maxpool2d_forward(&s, 241, 251, 257, 263, R(2401, 320, 0xe00), R(2402, 324, 0xe40)),
          "maxpool2d_forward");
    check(vgpu_maxpool2d_backward(&s, 269, 271, 277, 281, R(2501, 328, 0xe80), R(2502, 332, 0xec0),
                                  R(2503, 336, 0x500000f00ull)), "maxpool2d_backward");

    check(vgpu_stream_finish(&s), "the stream header (vgpu_stream_finish)");
    if (failures)
        return 1;

    FILE *out = fopen(argv[1], "wb");
    if (!out || fwrite(s.data, 1, s.len, out) != s.len || fclose(out) != 0) {
        perror(argv[1]);
        return 1;
    }
    return 0;
}
