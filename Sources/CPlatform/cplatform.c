#define _GNU_SOURCE
#include "cplatform.h"
#include <string.h>

int cplatform_set_thread_name(pthread_t thread, const char *name) {
    char truncated[16];
    strncpy(truncated, name, sizeof truncated - 1);
    truncated[sizeof truncated - 1] = '\0';
    return pthread_setname_np(thread, truncated);
}
