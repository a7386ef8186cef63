/* What the submission benchmarks (vgpubench, fullvgpubench) print, in one format the scripts parse. */
#ifndef MALV_BENCH_H
#define MALV_BENCH_H

#include <stdint.h>

/*
 * "PROGRAM: batch N: sync X us/submission Y us/command (n), qdD X us/submission Y us/command (n)",
 * from TSC cycles over submissions at `hz`.
 */
void bench_print_batch_row(const char *program, unsigned batch, uint64_t sync_cycles, uint64_t sync_submissions,
                           unsigned depth, uint64_t qd_cycles, uint64_t qd_submissions, uint64_t hz);

#endif
