#include "malv_mlaas.h"

const char *malv_mlaas_status_string(malv_mlaas_status status) {
    switch (status) {
    case MALV_MLAAS_OK: return "ok";
    case MALV_MLAAS_E_INVALID: return "invalid argument";
    case MALV_MLAAS_E_NOT_FOUND: return "not found";
    case MALV_MLAAS_E_RANGE: return "out of range";
    case MALV_MLAAS_E_NO_MEMORY: return "out of memory";
    case MALV_MLAAS_E_IO: return "I/O error";
    case MALV_MLAAS_E_DETACHED: return "VM detached";
    case MALV_MLAAS_E_UNSUPPORTED: return "unsupported";
    case MALV_MLAAS_E_VERSION: return "ABI version mismatch";
    case MALV_MLAAS_E_INTERNAL: return "internal error";
    default: return "unknown status";
    }
}
