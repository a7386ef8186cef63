/*
 * Guest/build/mnist.img (scripts/make-dataset; layout in Guest/README.md,
 * "mnist.img"): the 5,000 real MNIST digits as 785-byte records (28x28x1 u8
 * pixels, then a u8 label), read whole from a virtio-blk disk and checked.
 * test=preprocess and test=cnn read it; lib/mnist_disk.c.
 */
#ifndef MALV_MNIST_H
#define MALV_MNIST_H

#include <stdint.h>

#include "malv/virtio_blk.h"

#define MNIST_MAGIC "MALVMNST"
#define MNIST_SIDE 28u
#define MNIST_RECORD_BYTES (MNIST_SIDE * MNIST_SIDE + 1u)

struct mnist_header {
    char magic[8];
    uint32_t version, header_bytes, train_count, test_count, height, width, channels, classes, record_bytes, seed;
    uint64_t train_records, test_records, data_end;     /* byte offsets on the disk */
    uint32_t data_crc32;
} __attribute__((packed));

struct mnist_disk {
    struct blk_dev disk;
    uint8_t *bytes;             /* the whole disk (DMA memory) */
    struct mnist_header head;
};

/* Opens the first virtio-blk disk, reads all of it and checks the header: NULL, or why not. */
const char *mnist_read(struct mnist_disk *m);
/* Record i of the train (or test) set: 28x28 pixels, then the label. */
static inline const uint8_t *mnist_train_record(const struct mnist_disk *m, uint32_t i)
{
    return m->bytes + m->head.train_records + (uint64_t)i * MNIST_RECORD_BYTES;
}
static inline const uint8_t *mnist_test_record(const struct mnist_disk *m, uint32_t i)
{
    return m->bytes + m->head.test_records + (uint64_t)i * MNIST_RECORD_BYTES;
}

#endif
