import CPlatform

/// Gives the C heap's free pages back to the system.
///
/// glibc gives each thread that allocates its own arena (up to eight per core) and keeps what
/// is freed in it. gpud serves every VM's vGPU on a thread of its own, so each departed VM left
/// its arena's high-water mark resident: the soak saw gpud's RSS climb by about 0.3 MiB per
/// session while its live memory stayed flat (with one arena it stayed flat too). Called when
/// a session ends, `malloc_trim` returns that memory; it walks every arena, which takes far less
/// than a VM's connection does to set up.
public enum FreedMemory {
    public static func returnToTheSystem() {
        _ = malloc_trim(0)
    }
}
