/* A module built for an ABI this host does not speak (version 3, a larger descriptor): the host
 * must refuse it on the version, before reading any field past the first eight bytes. */
#include <stdint.h>

struct future_descriptor {
    uint32_t magic, abi_version, struct_size, kind;
    const char *name, *version;
    void *more[16];
};

static const struct future_descriptor descriptor = {
    .magic = 0x53414c4du, .abi_version = 3, .struct_size = sizeof(struct future_descriptor), .kind = 1,
    .name = "future", .version = "3.0.0",
};

const void *malv_mlaas_service_v1(void) { return &descriptor; }
