/*
 * Test programs. The kernel command line picks one with `test=NAME`; its
 * return value becomes the guest's exit code (0 = success). To add one, write
 * tests/NAME.c and add a line to the table in main.c.
 */
#ifndef MALV_TEST_H
#define MALV_TEST_H

struct guest_test {
    const char *name;
    int (*run)(void);
    const char *summary;
};

int test_hello(void);
int test_selftest(void);
int test_idle(void);
int test_mlaas(void);
int test_cnn(void);
int test_preprocess(void);
int test_shuffleread(void);
int test_pci(void);
int test_blk(void);
int test_blkbench(void);
int test_vgpu(void);
int test_vgpu_hostile(void);
int test_vgpubench(void);
int test_vgpuload(void);
int test_train(void);
int test_hotplug(void);
int test_fullvgpu(void);
int test_fullvgpu_hostile(void);
int test_fullvgpubench(void);
int test_smp(void);

#endif
