#ifndef MALVVM_CDRM_SHIM_H
#define MALVVM_CDRM_SHIM_H
// The system library itself; GPUInventory reads it through CGPUInventory's flat wrappers.
#include <xf86drm.h>
#endif
