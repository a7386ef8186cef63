/*
 * Just enough ACPI to find PCI Express config space (RSDP -> RSDT/XSDT ->
 * MCFG) and the CPUs (MADT). Every table is checksummed and bounds-checked before use.
 */
#ifndef MALV_ACPI_H
#define MALV_ACPI_H

#include <stdbool.h>
#include <stdint.h>

struct acpi_mcfg_info {
    uint64_t base;          /* ECAM address of bus 0 (even if start_bus > 0) */
    uint8_t start_bus, end_bus;
};

struct acpi_info {
    uint64_t rsdp;          /* where the RSDP was found; 0 if nowhere */
    uint8_t revision;       /* RSDP revision: 0 = ACPI 1.0 (RSDT), 2+ = XSDT */
    bool from_scan;         /* found by scanning the BIOS area, not via start_info */
    bool has_mcfg;
    struct acpi_mcfg_info mcfg;  /* segment group 0 only */
};

/*
 * Fills `out`. Returns NULL when an MCFG was found, else why not (which is
 * not an error: conf1 is the fallback).
 */
const char *acpi_find_mcfg(struct acpi_info *out);

/*
 * The LAPIC IDs of the enabled processors the MADT lists, in its order, into
 * apic_ids[0 .. max). Returns NULL on success, else why not.
 */
const char *acpi_list_cpus(uint8_t *apic_ids, unsigned max, unsigned *count);

#endif
