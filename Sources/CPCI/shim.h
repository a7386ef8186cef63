#ifndef MALVVM_CPCI_SHIM_H
#define MALVVM_CPCI_SHIM_H
// The system library itself; GPUInventory reads it through CGPUInventory's flat wrappers.
#include <pci/pci.h>
#endif
