#pragma once
#include <malloc.h>
#include <pthread.h>

/// pthread_setname_np(3): glibc declares it only under _GNU_SOURCE, which Swift's Glibc module
/// lacks. The kernel keeps the first 15 bytes. Returns 0 or an errno.
int cplatform_set_thread_name(pthread_t thread, const char *name);
