/*
 * test=blk: the first virtio-blk, end to end. Writes patterns derived from
 * (seed, sector) to regions spread over the disk -- sector 0 and the last
 * sector included -- in 1-, 8- and 128-sector requests, direct and indirect,
 * single- and multi-segment; flushes; reads back, verifies and prints a
 * CRC-32 per region; checks that a read past the end fails with IOERR; then
 * does it all again with MSI-X completions instead of polling.
 *
 * The output and the disk's final contents depend only on the disk size (and
 * on the device's optional features, which go on `blk: optional features:`
 * lines only), so two VMMs can be compared line by line and image by image:
 * optional operations (write-zeroes, discard) only touch regions that the
 * second pass rewrites.
 */
#include "malv/bootinfo.h"
#include "malv/console.h"
#include "malv/crc32.h"
#include "malv/format.h"
#include "malv/intr.h"
#include "malv/memory.h"
#include "malv/string.h"
#include "malv/test.h"
#include "malv/virtio_blk.h"

#define MSIX_VECTOR 0x50        /* queue; the config vector is the next one */
#define SEED_POLLED 1
#define SEED_MSIX 2
#define MIN_CAPACITY 8192       /* sectors: room for the regions below */
#define REGION_MAX_SECTORS 512

struct region {
    const char *name;
    uint64_t sector;            /* filled in from the capacity */
    uint32_t count, req;        /* sectors; sectors per request */
    uint32_t seg_bytes;         /* data segment size (0: one segment) */
    bool indirect;
};

static struct region regions[] = {
    { "first", 0, 16, 1, 0, false },
    { "last", 0, 16, 1, 0, true },
    { "quarter", 0, 64, 8, 0, false },
    { "quarter+", 0, 64, 8, 512, true },
    { "half", 0, 512, 128, 4096, false },
    { "half+", 0, 512, 128, 4096, true },
};
#define REGION_COUNT (sizeof regions / sizeof regions[0])

static struct blk_dev dev;
static uint8_t *buf;            /* one region, DMA memory */
static char why[160];

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* The 8-byte word `w` of `sector` for `seed`: distinct per sector, word and seed. */
static uint64_t pattern(uint64_t seed, uint64_t sector, unsigned w)
{
    return mix64(seed << 56 ^ sector << 6 ^ w);
}

static void fill(const struct region *r, uint64_t seed)
{
    uint64_t *p = (uint64_t *)buf;
    for (uint32_t s = 0; s < r->count; s++)
        for (unsigned w = 0; w < BLK_SECTOR / 8; w++)
            *p++ = pattern(seed, r->sector + s, w);
}

/* Returns the first sector that differs, or UINT64_MAX. seed 0 means zeroes. */
static uint64_t verify(const struct region *r, uint64_t seed)
{
    const uint64_t *p = (const uint64_t *)buf;
    for (uint32_t s = 0; s < r->count; s++)
        for (unsigned w = 0; w < BLK_SECTOR / 8; w++)
            if (*p++ != (seed ? pattern(seed, r->sector + s, w) : 0))
                return r->sector + s;
    return UINT64_MAX;
}

/* Segments small enough for the request to respect seg_max. */
static uint32_t seg_bytes(const struct region *r)
{
    uint32_t bytes = r->req * BLK_SECTOR, seg = r->seg_bytes ? r->seg_bytes : bytes;
    if (dev.seg_max && (bytes + seg - 1) / seg > dev.seg_max) {
        seg = (bytes + dev.seg_max - 1) / dev.seg_max;
        seg = (seg + BLK_SECTOR - 1) & ~(BLK_SECTOR - 1);
    }
    return seg;
}

static const char *status_name(int s)
{
    switch (s) {
    case VIRTIO_BLK_S_OK: return "OK";
    case VIRTIO_BLK_S_IOERR: return "IOERR";
    case VIRTIO_BLK_S_UNSUPP: return "UNSUPP";
    case BLK_STATUS_NOT_WRITTEN: return "not written";
    default: return "invalid";
    }
}

/* Reads or writes a whole region with up to BLK_MAX_INFLIGHT requests in flight. */
static bool region_io(const struct region *r, uint32_t type)
{
    uint32_t total = r->count / r->req, next = 0, done = 0, bytes = r->req * BLK_SECTOR;
    while (done < total) {
        bool added = false;
        while (next < total) {
            struct blk_io io = {
                .type = type, .sector = r->sector + (uint64_t)next * r->req,
                .buf = buf + (size_t)next * bytes, .bytes = bytes,
                .seg_bytes = seg_bytes(r), .indirect = r->indirect, .tag = next,
            };
            int slot = blk_submit(&dev, &io);
            if (slot == -1 && dev.inflight == 0) {
                snprintf(why, sizeof why, "a %u-byte request does not fit in the queue", bytes);
                return false;
            }
            if (slot == -1)
                break;
            if (slot < 0) {
                snprintf(why, sizeof why, "request refused by the driver: %s",
                         blk_error(&dev) ? blk_error(&dev) : "outside the device's limits");
                return false;
            }
            next++;
            added = true;
        }
        if (added)
            blk_kick(&dev);
        struct blk_done d[BLK_MAX_INFLIGHT];
        int n = blk_complete(&dev, d, BLK_MAX_INFLIGHT, true);
        if (n < 0) {
            snprintf(why, sizeof why, "%s", blk_error(&dev));
            return false;
        }
        for (int i = 0; i < n; i++) {
            uint64_t sector = r->sector + d[i].tag * r->req;
            if (d[i].status != VIRTIO_BLK_S_OK) {
                snprintf(why, sizeof why, "%s of sector %llu: status %s (%u)",
                         type == VIRTIO_BLK_T_IN ? "read" : "write", (unsigned long long)sector,
                         status_name(d[i].status), d[i].status);
                return false;
            }
            /* A read writes the data and the status byte; a write only the status. */
            uint32_t want = type == VIRTIO_BLK_T_IN ? bytes + 1 : 1;
            if (d[i].used_len != want) {
                snprintf(why, sizeof why, "%s of sector %llu: used len %u, expected %u",
                         type == VIRTIO_BLK_T_IN ? "read" : "write", (unsigned long long)sector,
                         d[i].used_len, want);
                return false;
            }
            done++;
        }
    }
    return true;
}

static bool simple(uint32_t type, int expect, const char *what)
{
    struct blk_io io = { .type = type };
    int s = blk_sync(&dev, &io, NULL);
    if (s != expect) {
        snprintf(why, sizeof why, "%s: status %s (%d), expected %s", what,
                 s < 0 ? blk_error(&dev) : status_name(s), s, status_name(expect));
        return false;
    }
    return true;
}

/* One pass over every region: write (unless read-only), flush, read back, verify. */
static bool pass(const char *label, uint64_t seed)
{
    if (!dev.read_only) {
        for (unsigned i = 0; i < REGION_COUNT; i++) {
            fill(&regions[i], seed);
            if (!region_io(&regions[i], VIRTIO_BLK_T_OUT))
                return false;
        }
        if (blk_has(&dev, VIRTIO_BLK_F_FLUSH) && !simple(VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_S_OK, "flush"))
            return false;
    }
    for (unsigned i = 0; i < REGION_COUNT; i++) {
        const struct region *r = &regions[i];
        memset(buf, 0xa5, (size_t)r->count * BLK_SECTOR);
        if (!region_io(r, VIRTIO_BLK_T_IN))
            return false;
        uint64_t bad = dev.read_only ? UINT64_MAX : verify(r, seed);
        if (bad != UINT64_MAX) {
            snprintf(why, sizeof why, "region %s: sector %llu reads back wrong", r->name,
                     (unsigned long long)bad);
            return false;
        }
        printf("blk: %s: region %-8s sectors %llu+%u in %u-sector requests: %s, crc32 0x%08x\n",
               label, r->name, (unsigned long long)r->sector, r->count, r->req,
               dev.read_only ? "read" : "verified", crc32_update(0, buf, (size_t)r->count * BLK_SECTOR));
    }
    return true;
}

/* Reads at and across the end of the disk: a device must refuse both. */
static bool past_end(void)
{
    const uint64_t starts[2] = { dev.capacity, dev.capacity - 1 };
    for (unsigned i = 0; i < 2; i++) {
        struct blk_io io = { .type = VIRTIO_BLK_T_IN, .sector = starts[i], .buf = buf, .bytes = 2 * BLK_SECTOR };
        int s = blk_sync(&dev, &io, NULL);
        if (s != VIRTIO_BLK_S_IOERR) {
            snprintf(why, sizeof why, "read of sectors %llu+2 (capacity %llu): status %s (%d), expected IOERR",
                     (unsigned long long)starts[i], (unsigned long long)dev.capacity,
                     s < 0 ? blk_error(&dev) : status_name(s), s);
            return false;
        }
    }
    /* An unknown request type must come back UNSUPP. */
    return simple(0x7f, VIRTIO_BLK_S_UNSUPP, "request type 0x7f");
}

static bool get_id(void)
{
    uint8_t *id = buf;
    memset(id, 0, BLK_ID_BYTES + 1);
    struct blk_io io = { .type = VIRTIO_BLK_T_GET_ID, .buf = id };
    uint32_t len = 0;
    int s = blk_sync(&dev, &io, &len);
    if (s == VIRTIO_BLK_S_UNSUPP) {
        printf("blk: id unsupported\n");
        return true;
    }
    if (s != VIRTIO_BLK_S_OK) {
        snprintf(why, sizeof why, "GET_ID: status %s (%d)", s < 0 ? blk_error(&dev) : status_name(s), s);
        return false;
    }
    /* Up to 20 bytes, NUL-terminated only if shorter; show what is printable. */
    char text[BLK_ID_BYTES + 1];
    unsigned n = 0;
    while (n < BLK_ID_BYTES && id[n]) {
        text[n] = id[n] >= 0x20 && id[n] < 0x7f ? (char)id[n] : '?';
        n++;
    }
    text[n] = '\0';
    printf("blk: id '%s'\n", text);
    return true;
}

/* Write-zeroes and discard on regions the MSI-X pass rewrites, so the image stays the same. */
static bool optional_ops(char *report, size_t size)
{
    size_t used = 0;
    report[0] = '\0';
    if (dev.read_only)
        return true;
    struct region *zr = &regions[2];
    if (blk_has(&dev, VIRTIO_BLK_F_WRITE_ZEROES) && dev.max_wz_sectors >= zr->count) {
        struct blk_io io = { .type = VIRTIO_BLK_T_WRITE_ZEROES, .sector = zr->sector, .bytes = zr->count * BLK_SECTOR };
        int s = blk_sync(&dev, &io, NULL);
        if (s != VIRTIO_BLK_S_OK) {
            snprintf(why, sizeof why, "write-zeroes: status %s (%d)", s < 0 ? blk_error(&dev) : status_name(s), s);
            return false;
        }
        memset(buf, 0xa5, (size_t)zr->count * BLK_SECTOR);
        if (!region_io(zr, VIRTIO_BLK_T_IN))
            return false;
        if (verify(zr, 0) != UINT64_MAX) {
            snprintf(why, sizeof why, "write-zeroes: region %s does not read back as zeroes", zr->name);
            return false;
        }
        used += (size_t)snprintf(report + used, size - used, " write-zeroes ok");
    }
    struct region *dr = &regions[3];
    if (blk_has(&dev, VIRTIO_BLK_F_DISCARD) && dev.max_discard_sectors >= dr->count) {
        /* Discarded sectors read back unspecified: only the status is checked. */
        struct blk_io io = { .type = VIRTIO_BLK_T_DISCARD, .sector = dr->sector, .bytes = dr->count * BLK_SECTOR };
        int s = blk_sync(&dev, &io, NULL);
        if (s != VIRTIO_BLK_S_OK) {
            snprintf(why, sizeof why, "discard: status %s (%d)", s < 0 ? blk_error(&dev) : status_name(s), s);
            return false;
        }
        used += (size_t)snprintf(report + used, size - used, " discard ok");
    }
    return true;
}

static void print_features(void)
{
    printf("blk: features:");
    for (unsigned bit = 0; bit < 64; bit++)
        if ((dev.vp.features & BLK_FEATURES_BASE) & VIRTIO_BIT(bit))
            printf(" %s", blk_feature_name(bit));
    printf("\n");
    printf("blk: optional features:");
    for (unsigned bit = 0; bit < 64; bit++)
        if ((dev.vp.features & ~BLK_FEATURES_BASE) & VIRTIO_BIT(bit))
            printf(" %s", blk_feature_name(bit));
    printf("; offered 0x%llx; queue size %u, seg_max %u, size_max %u\n",
           (unsigned long long)dev.vp.device_features, dev.vq.size, dev.seg_max, dev.size_max);
}

static int fail(void)
{
    printf("blk: FAIL %s\n", why);
    return 1;
}

int test_blk(void)
{
    const char *err = pci_init();
    char arg[8] = "on";
    cmdline_get("blk_optional", arg, sizeof arg);
    uint64_t optional = strcmp(arg, "off") == 0 ? 0 : BLK_FEATURES_OPTIONAL;
    if (!err)
        err = blk_open(&dev, 0, optional, false, 0);
    if (err) {
        snprintf(why, sizeof why, "%s", err);
        return fail();
    }
    const struct pci_function *f = dev.vp.fn;
    printf("blk: device %02x:%02x.%u, capacity %llu sectors (%llu MiB), block size %u\n", f->bus,
           f->dev, f->fn, (unsigned long long)dev.capacity,
           (unsigned long long)(dev.capacity >> 11), dev.blk_size);
    print_features();
    if (dev.blk_size != BLK_SECTOR) {
        snprintf(why, sizeof why, "block size %u: this test needs 512-byte blocks", dev.blk_size);
        return fail();
    }
    if (dev.capacity < MIN_CAPACITY || dev.capacity > (1ull << 48)) {
        snprintf(why, sizeof why, "capacity %llu sectors: need at least %u",
                 (unsigned long long)dev.capacity, MIN_CAPACITY);
        return fail();
    }
    if (dev.read_only)
        printf("blk: read-only disk (RO): reads only\n");

    /* Regions, from the capacity alone; eight-sector aligned and disjoint. */
    uint64_t q = dev.capacity / 4 & ~7ull, h = dev.capacity / 2 & ~7ull;
    regions[1].sector = dev.capacity - regions[1].count;
    regions[2].sector = q;
    regions[3].sector = q + 512;
    regions[4].sector = h;
    regions[5].sector = h + 2048;

    buf = dma_alloc(REGION_MAX_SECTORS * BLK_SECTOR, 4096);
    if (!buf) {
        snprintf(why, sizeof why, "out of DMA memory");
        return fail();
    }

    if (!get_id() || !pass("polled", SEED_POLLED) || !past_end())
        return fail();
    printf("blk: read past the end: IOERR; unknown request type: UNSUPP\n");
    char report[96];
    if (!optional_ops(report, sizeof report))
        return fail();
    printf("blk: optional features: done:%s; %llu notifies for %llu requests\n", report[0] ? report : " none",
           (unsigned long long)dev.vq.notifies, (unsigned long long)dev.vq.completed);

    /* Second pass: a fresh reset and init, completions by MSI-X. */
    err = blk_open(&dev, 0, optional, true, MSIX_VECTOR);
    if (err) {
        snprintf(why, sizeof why, "MSI-X init: %s", err);
        return fail();
    }
    printf("blk: msix: completions on vector 0x%x\n", MSIX_VECTOR);
    if (!pass("msix", SEED_MSIX) || !past_end())
        return fail();
    /*
     * A completion already in the used ring is taken without waiting, and its
     * interrupt may land a moment later on a busy host: give it the request
     * timeout before calling the interrupts missing.
     */
    if (!irq_wait(MSIX_VECTOR, dev.irq_base + 1, dev.timeout_cycles)) {
        snprintf(why, sizeof why, "no MSI-X interrupt arrived (every completion was found by polling)");
        return fail();
    }
    printf("blk: optional features: msix pass: %u table entries, %llu interrupts for %llu requests, "
           "%llu notifies\n", dev.vp.msix.entries, (unsigned long long)blk_interrupts(&dev), (unsigned long long)dev.vq.completed,
           (unsigned long long)dev.vq.notifies);
    if (virtio_pci_needs_reset(&dev.vp)) {
        snprintf(why, sizeof why, "%s", dev.vp.broken);
        return fail();
    }
    printf("blk: PASS\n");
    return 0;
}
