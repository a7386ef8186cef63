#define _GNU_SOURCE
#include "seccomp_filter.h"

#include <errno.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Calls the VMM never makes after set-up: running programs, tracing or reading other processes,
 * changing the mount, namespace, key, module, time or swap state of the host, loading BPF or
 * perf programs, userfaultfd. A deny list (the process keeps every other call): the allow-lists
 * per thread kind that Firecracker has are the next step (README, "Hardening: confinement"). */
static const struct {
    const char *name;
} forbidden[] = {
    {"execve"}, {"execveat"}, {"ptrace"}, {"process_vm_readv"}, {"process_vm_writev"},
    {"mount"}, {"umount2"}, {"pivot_root"}, {"chroot"}, {"unshare"}, {"setns"},
    {"fsopen"}, {"fsmount"}, {"fspick"}, {"move_mount"}, {"open_tree"},
    {"kexec_load"}, {"kexec_file_load"}, {"init_module"}, {"finit_module"}, {"delete_module"},
    {"bpf"}, {"perf_event_open"}, {"keyctl"}, {"add_key"}, {"request_key"},
    {"reboot"}, {"swapon"}, {"swapoff"}, {"acct"}, {"quotactl"},
    {"settimeofday"}, {"clock_settime"}, {"clock_adjtime"}, {"adjtimex"},
    {"userfaultfd"}, {"open_by_handle_at"}, {"name_to_handle_at"}, {"iopl"}, {"ioperm"},
    {"lookup_dcookie"}, {"vhangup"}, {"fanotify_init"},
};
#define FORBIDDEN_COUNT (sizeof forbidden / sizeof forbidden[0])

/* Resolved once, before the filter goes in: the handler may not allocate. */
static int forbidden_numbers[FORBIDDEN_COUNT];
static int trap_exit_status = 70;

size_t malv_seccomp_forbidden_count(void) { return FORBIDDEN_COUNT; }

const char *malv_seccomp_forbidden_name(size_t index)
{
    return index < FORBIDDEN_COUNT ? forbidden[index].name : NULL;
}

static void put(const char *text) { (void)!write(STDERR_FILENO, text, strlen(text)); }

static void put_number(long value)
{
    char digits[24];
    size_t n = sizeof digits;
    unsigned long v = value < 0 ? (unsigned long)-value : (unsigned long)value;
    do {
        digits[--n] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n > 1);
    if (value < 0)
        digits[--n] = '-';
    (void)!write(STDERR_FILENO, digits + n, sizeof digits - n);
}

/* SIGSYS from SCMP_ACT_TRAP: async-signal-safe only (write, _exit). */
static void on_forbidden_call(int signal, siginfo_t *info, void *context)
{
    (void)signal;
    (void)context;
    const char *name = "?";
    for (size_t i = 0; i < FORBIDDEN_COUNT; i++)
        if (forbidden_numbers[i] == info->si_syscall)
            name = forbidden[i].name;
    put("malvvm: seccomp: the VMM made a forbidden system call, ");
    put(name);
    put(" (");
    put_number(info->si_syscall);
    put("); stopping (--no-seccomp to debug)\n");
    _exit(trap_exit_status);
}

int malv_seccomp_confine(int exit_status, char *error, size_t capacity)
{
    trap_exit_status = exit_status;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_forbidden_call;
    action.sa_flags = SA_SIGINFO;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGSYS, &action, NULL) != 0) {
        snprintf(error, capacity, "seccomp: cannot handle SIGSYS: %s", strerror(errno));
        return -1;
    }
    scmp_filter_ctx filter = seccomp_init(SCMP_ACT_ALLOW);
    if (!filter) {
        snprintf(error, capacity, "seccomp: libseccomp could not start a filter");
        return -1;
    }
    int rc = seccomp_attr_set(filter, SCMP_FLTATR_CTL_TSYNC, 1);
    for (size_t i = 0; rc == 0 && i < FORBIDDEN_COUNT; i++) {
        int number = seccomp_syscall_resolve_name(forbidden[i].name);
        forbidden_numbers[i] = number;
        /* A call this architecture does not have (iopl on arm64) has nothing to forbid. */
        if (number == __NR_SCMP_ERROR)
            continue;
        rc = seccomp_rule_add(filter, SCMP_ACT_TRAP, number, 0);
        if (rc != 0)
            snprintf(error, capacity, "seccomp: cannot forbid %s: %s", forbidden[i].name, strerror(-rc));
    }
    if (rc == 0) {
        rc = seccomp_load(filter);
        if (rc != 0)
            snprintf(error, capacity, "seccomp: the kernel refused the filter: %s", strerror(-rc));
    }
    seccomp_release(filter);
    return rc == 0 ? 0 : -1;
}

void malv_seccomp_make_forbidden_call(void)
{
    /* bpf(-1, NULL, 0): EINVAL wherever it is allowed; nothing happens either way. */
    (void)syscall(SYS_bpf, -1, NULL, 0);
}
