/*
 * The compute-kernel checks that test=vgpu (para-vGPU) and test=fullvgpu
 * (full-vGPU) share: every opcode of compute stream v1 the GPU offers, on
 * deterministic pseudo-random inputs (sizes 1, 7, 33 among them), against the
 * same computation on the guest CPU in plain C (double accumulation, libm-free
 * exp/log/tanh). The GPU side is a kc_target: its buffers (referenced through
 * vgpu_f32, so a para-vGPU blob or a full-vGPU buffer with its GPU address),
 * its stream and a function that runs the stream. One line per case:
 *   PROGRAM: <kernel> <shape> ... ok (max err X, tol T)
 * where the error is max |gpu - cpu| / max(1, |cpu|) and must stay within the
 * kernel's tolerance (0 for data movement, 1e-6 for one rounding, 1e-5 for
 * exp/tanh-based kernels, 1e-4 for long dot products).
 */
#ifndef MALV_TESTS_KERNEL_CHECKS_H
#define MALV_TESTS_KERNEL_CHECKS_H

#include <stdbool.h>
#include <stdint.h>

#include "malv/vgpu.h"

#define KC_NBUF 6
#define KC_BUF_FLOATS (64u * 1024u)
#define KC_BUF_BYTES (KC_BUF_FLOATS * 4u)

struct kc_target {
    const char *program;                        /* prefix of every line: "vgpu", "fullvgpu" */
    struct vgpu_buf *buf;                       /* KC_NBUF buffers of KC_BUF_BYTES the CPU reads at ->ptr */
    struct vgpu_stream *stream;                 /* the checks record into it */
    uint32_t (*run)(struct vgpu_stream *s);     /* submit and wait: 0, or a status for status_name */
    const char *(*status_name)(uint32_t status);
    uint32_t opcode_mask;                       /* bit n: opcode n is offered */
};

extern struct kc_target kc;
extern float *kc_ref0, *kc_ref1;                /* CPU results, KC_BUF_BYTES each */
extern unsigned kc_passed, kc_failed;

/* Takes the target, allocates the CPU-side buffers and seeds the inputs; false if out of memory. */
bool kc_init(const struct kc_target *target, uint64_t seed);
/* Every kernel the opcode mask offers (a line for each one it does not). */
void kc_kernels(void);

/* Pieces for a program's own cases. */
uint64_t kc_next_u64(void);
void kc_fill(float *p, unsigned n, float lo, float hi);
/* NaN in outputs, so a kernel that wrote nothing cannot pass. */
void kc_poison(float *p, unsigned n);
/* Max of |got - want| / max(1, |want|); NaN anywhere counts as infinite. */
double kc_max_err(const float *got, const float *want, unsigned n);
/* "PROGRAM: kernel shape ... ok|FAILED (detail)", counted in kc_passed / kc_failed. */
void kc_result(bool ok, const char *kernel, const char *shape, const char *detail);

/* Buffer i of the target: its floats, and a reference to its first `count`. */
static inline float *B(unsigned i) { return vgpu_f32p(&kc.buf[i]); }
static inline struct vgpu_ref R(unsigned i, uint32_t count) { return vgpu_f32(&kc.buf[i], 0, count); }

#endif
