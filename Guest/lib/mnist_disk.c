/*
 * Reads mnist.img whole through virtio-blk and checks its header (malv/mnist.h).
 * The whole disk is small (4 MiB), and the jobs that read it either check the
 * host's batches against every record or preprocess every record themselves.
 */
#include "malv/memory.h"
#include "malv/mnist.h"
#include "malv/pci.h"
#include "malv/string.h"

const char *mnist_read(struct mnist_disk *m)
{
    const char *err = pci_init();
    if (!err)
        err = blk_open(&m->disk, 0, BLK_FEATURES_OPTIONAL, false, 0);
    if (err)
        return err;
    if (m->disk.blk_size != BLK_SECTOR)
        return "block size is not 512";
    uint64_t bytes = m->disk.capacity * BLK_SECTOR;
    if (bytes > (64ull << 20))
        return "disk larger than 64 MiB";
    m->bytes = dma_alloc(bytes, 4096);
    if (!m->bytes)
        return "out of memory for the disk image";
    const uint32_t chunk = 64u << 10;
    for (uint64_t at = 0; at < bytes; at += chunk) {
        uint32_t len = bytes - at < chunk ? (uint32_t)(bytes - at) : chunk;
        struct blk_io io = { .type = VIRTIO_BLK_T_IN, .sector = at / BLK_SECTOR, .buf = m->bytes + at, .bytes = len };
        if (blk_sync(&m->disk, &io, NULL) != VIRTIO_BLK_S_OK)
            return "read failed";
    }
    struct mnist_header *h = &m->head;
    memcpy(h, m->bytes, sizeof *h);
    if (memcmp(h->magic, MNIST_MAGIC, 8) != 0 || h->version != 1)
        return "no mnist.img (magic/version); run scripts/make-dataset";
    if (h->height != MNIST_SIDE || h->width != MNIST_SIDE || h->channels != 1 || h->record_bytes != MNIST_RECORD_BYTES)
        return "records are not 28x28x1 + label";
    if (h->data_end > bytes || h->train_records + (uint64_t)h->train_count * h->record_bytes > h->data_end ||
        h->test_records + (uint64_t)h->test_count * h->record_bytes > h->data_end)
        return "the records run past the disk";
    return NULL;
}
