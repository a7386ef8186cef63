#include "malv/bench.h"

#include "malv/console.h"
#include "malv/format.h"

/* cycles / n in microseconds with two decimals, without floats in the format. */
static void microseconds(char *out, unsigned size, uint64_t cycles, uint64_t n, uint64_t hz)
{
    uint64_t centi = n && hz ? cycles * 100000000ull / hz / n : 0;     /* 1/100 us */
    snprintf(out, size, "%llu.%02llu", (unsigned long long)(centi / 100), (unsigned long long)(centi % 100));
}

void bench_print_batch_row(const char *program, unsigned batch, uint64_t sync_cycles, uint64_t sync_submissions,
                           unsigned depth, uint64_t qd_cycles, uint64_t qd_submissions, uint64_t hz)
{
    char s1[24], s2[24], q1[24], q2[24];
    microseconds(s1, sizeof s1, sync_cycles, sync_submissions, hz);
    microseconds(s2, sizeof s2, sync_cycles, sync_submissions * batch, hz);
    microseconds(q1, sizeof q1, qd_cycles, qd_submissions, hz);
    microseconds(q2, sizeof q2, qd_cycles, qd_submissions * batch, hz);
    printf("%s: batch %3u: sync %8s us/submission %7s us/command (%llu), qd%u %8s us/submission %7s "
           "us/command (%llu)\n",
           program, batch, s1, s2, (unsigned long long)sync_submissions, depth, q1, q2,
           (unsigned long long)qd_submissions);
}
