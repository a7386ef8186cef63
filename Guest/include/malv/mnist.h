/*
 * The header of Guest/build/mnist.img (scripts/make-dataset): the real MNIST digits as records
 * of 28x28 u8 pixels and a u8 label, train then test. test=preprocess and test=shuffleread read it.
 */
#ifndef MALV_MNIST_H
#define MALV_MNIST_H

#include <stdint.h>

#define MNIST_MAGIC "MALVMNST"

struct mnist_header {
    char magic[8];
    uint32_t version, header_bytes, train_count, test_count, height, width, channels, classes, record_bytes, seed;
    uint64_t train_records, test_records, data_end;
    uint32_t data_crc32;
} __attribute__((packed));

#endif
