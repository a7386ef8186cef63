/*
 * seccomp_filter.h — the VMM's system-call filter (issue #14, "Confinement"), on libseccomp.
 *
 * malvvm installs it in `malvvm run` and `malvvm gpud` once set-up is done (every device, thread
 * and socket exists), on every thread of the process at once (TSYNC). What a guest, a hostile
 * vgpu-user client or an API client might make the VMM do from then on never needs these calls,
 * so a VMM that makes one has been subverted: the filter traps it, and the handler writes one
 * line naming the call to stderr and ends the process with `exit_status`.
 */
#ifndef MALV_SECCOMP_FILTER_H
#define MALV_SECCOMP_FILTER_H

#include <stddef.h>

/* Installs the filter; 0, or -1 with one line in `error`. `exit_status` is what the process
 * exits with when a forbidden call is trapped. */
int malv_seccomp_confine(int exit_status, char *error, size_t error_capacity);

/* How many system calls the filter forbids, and the name of the i-th (for `--help` and logs). */
size_t malv_seccomp_forbidden_count(void);
const char *malv_seccomp_forbidden_name(size_t index);

/* Makes one forbidden call (bpf with an invalid command: harmless where it is allowed), to
 * show that the filter stops the process; returns only if it did not. */
void malv_seccomp_make_forbidden_call(void);

#endif
