// vkdirect: the smallest honest Vulkan program that dispatches the same SPIR-V as GPUHost,
// with the same buffers, push constants and grids, so `scripts/bench-gpu` can state our
// backend's overhead as a ratio against it. Command buffers are recorded once per case and
// resubmitted: this is the floor a hand-written Vulkan program reaches.
//
// usage: vkdirect PLAN SPV_DIR
// PLAN lines (written by `gpu-bench plan`):
//   case NAME ITERATIONS
//   buffer BYTES                       (one per buffer, in binding-index order)
//   dispatch SHADER GX GY NB b0.. NP p0..
//   end
// Output, one line per case: NAME WALL_NS_MEDIAN DEVICE_NS_MEDIAN WALL_NS_MIN
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <vulkan/vulkan.h>

#define CHECK(call)                                                                  \
    do {                                                                             \
        VkResult r_ = (call);                                                        \
        if (r_ != VK_SUCCESS) {                                                      \
            fprintf(stderr, "vkdirect: %s failed: %d (line %d)\n", #call, r_, __LINE__); \
            exit(1);                                                                 \
        }                                                                            \
    } while (0)

enum { MAX_BUFFERS = 16, MAX_DISPATCHES = 16, MAX_BINDINGS = 8, MAX_PUSH = 32 };

typedef struct {
    char shader[64];
    uint32_t gx, gy;
    int nb, bindings[MAX_BINDINGS];
    int np;
    uint32_t push[MAX_PUSH];
} Dispatch;

typedef struct {
    char name[64];
    int iterations;
    int nbuffers;
    uint64_t sizes[MAX_BUFFERS];
    int ndispatches;
    Dispatch dispatches[MAX_DISPATCHES];
} Case;

static VkInstance instance;
static VkPhysicalDevice physical;
static VkDevice device;
static VkQueue queue;
static uint32_t family;
static VkPhysicalDeviceMemoryProperties memory;
static double period;
static uint32_t validBits;
static VkCommandPool pool;

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int rank(VkPhysicalDeviceType type) {
    switch (type) {
    case VK_PHYSICAL_DEVICE_TYPE_DISCRETE_GPU: return 0;
    case VK_PHYSICAL_DEVICE_TYPE_INTEGRATED_GPU: return 1;
    case VK_PHYSICAL_DEVICE_TYPE_VIRTUAL_GPU: return 2;
    case VK_PHYSICAL_DEVICE_TYPE_CPU: return 3;
    default: return 4;
    }
}

// Same choice as GPUHost's `.automatic`: best device type, then a compute family with
// timestamps, preferring compute-only.
static void setup(void) {
    VkApplicationInfo app = {VK_STRUCTURE_TYPE_APPLICATION_INFO};
    app.pApplicationName = "vkdirect";
    app.apiVersion = VK_API_VERSION_1_1;
    VkInstanceCreateInfo ici = {VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO};
    ici.pApplicationInfo = &app;
    CHECK(vkCreateInstance(&ici, NULL, &instance));
    uint32_t count = 0;
    CHECK(vkEnumeratePhysicalDevices(instance, &count, NULL));
    if (count == 0) { fprintf(stderr, "vkdirect: no Vulkan devices\n"); exit(1); }
    VkPhysicalDevice devices[16];
    if (count > 16) count = 16;
    CHECK(vkEnumeratePhysicalDevices(instance, &count, devices));
    int best = -1, bestRank = 99;
    for (uint32_t i = 0; i < count; i++) {
        VkPhysicalDeviceProperties p;
        vkGetPhysicalDeviceProperties(devices[i], &p);
        if (rank(p.deviceType) < bestRank) { bestRank = rank(p.deviceType); best = (int)i; }
    }
    physical = devices[best];
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(physical, &props);
    period = props.limits.timestampPeriod;
    fprintf(stderr, "vkdirect: %s\n", props.deviceName);
    VkQueueFamilyProperties families[16];
    uint32_t nf = 16;
    vkGetPhysicalDeviceQueueFamilyProperties(physical, &nf, families);
    int chosen = -1, score = -1;
    for (uint32_t i = 0; i < nf; i++) {
        if (!(families[i].queueFlags & VK_QUEUE_COMPUTE_BIT)) continue;
        int s = (families[i].timestampValidBits ? 2 : 0) + (families[i].queueFlags & VK_QUEUE_GRAPHICS_BIT ? 0 : 1);
        if (s > score) { score = s; chosen = (int)i; }
    }
    if (chosen < 0) { fprintf(stderr, "vkdirect: no compute queue\n"); exit(1); }
    family = (uint32_t)chosen;
    validBits = families[chosen].timestampValidBits;
    float priority = 1;
    VkDeviceQueueCreateInfo qci = {VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO};
    qci.queueFamilyIndex = family;
    qci.queueCount = 1;
    qci.pQueuePriorities = &priority;
    VkDeviceCreateInfo dci = {VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO};
    dci.queueCreateInfoCount = 1;
    dci.pQueueCreateInfos = &qci;
    CHECK(vkCreateDevice(physical, &dci, NULL, &device));
    vkGetDeviceQueue(device, family, 0, &queue);
    vkGetPhysicalDeviceMemoryProperties(physical, &memory);
    VkCommandPoolCreateInfo pci = {VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO};
    pci.flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT;
    pci.queueFamilyIndex = family;
    CHECK(vkCreateCommandPool(device, &pci, NULL, &pool));
}

static uint32_t memory_type(uint32_t bits, VkMemoryPropertyFlags want) {
    for (uint32_t i = 0; i < memory.memoryTypeCount; i++)
        if ((bits & (1u << i)) && (memory.memoryTypes[i].propertyFlags & want) == want) return i;
    return UINT32_MAX;
}

typedef struct { VkBuffer buffer; VkDeviceMemory memory; void *mapped; } Buffer;

static Buffer make_buffer(uint64_t size, int deviceLocal) {
    Buffer b = {0};
    VkBufferCreateInfo bci = {VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bci.size = size;
    bci.usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
    CHECK(vkCreateBuffer(device, &bci, NULL, &b.buffer));
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(device, b.buffer, &req);
    uint32_t type = UINT32_MAX;
    if (deviceLocal) type = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
    if (type == UINT32_MAX)
        type = memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    if (type == UINT32_MAX) { fprintf(stderr, "vkdirect: no memory type\n"); exit(1); }
    VkMemoryAllocateInfo mai = {VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    mai.allocationSize = req.size;
    mai.memoryTypeIndex = type;
    CHECK(vkAllocateMemory(device, &mai, NULL, &b.memory));
    CHECK(vkBindBufferMemory(device, b.buffer, b.memory, 0));
    VkMemoryPropertyFlags host = VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT;
    if ((memory.memoryTypes[type].propertyFlags & host) == host) CHECK(vkMapMemory(device, b.memory, 0, size, 0, &b.mapped));
    return b;
}

static void free_buffer(Buffer *b) {
    if (b->mapped) vkUnmapMemory(device, b->memory);
    vkDestroyBuffer(device, b->buffer, NULL);
    vkFreeMemory(device, b->memory, NULL);
}

static void submit_and_wait(VkCommandBuffer cb, VkFence fence) {
    VkSubmitInfo si = {VK_STRUCTURE_TYPE_SUBMIT_INFO};
    si.commandBufferCount = 1;
    si.pCommandBuffers = &cb;
    CHECK(vkQueueSubmit(queue, 1, &si, fence));
    CHECK(vkWaitForFences(device, 1, &fence, VK_TRUE, UINT64_MAX));
    CHECK(vkResetFences(device, 1, &fence));
}

// Same data as gpu-bench writes: float i % 97 * 0.01 - 0.4.
static void fill(Buffer *target, uint64_t size, VkCommandBuffer cb, VkFence fence) {
    Buffer staging = {0};
    float *data;
    if (target->mapped) {
        data = target->mapped;
    } else {
        staging = make_buffer(size, 0);
        data = staging.mapped;
    }
    for (uint64_t i = 0; i < size / 4; i++) data[i] = (float)(i % 97) * 0.01f - 0.4f;
    if (!target->mapped) {
        VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
        CHECK(vkBeginCommandBuffer(cb, &bi));
        VkBufferCopy region = {0, 0, size};
        vkCmdCopyBuffer(cb, staging.buffer, target->buffer, 1, &region);
        CHECK(vkEndCommandBuffer(cb));
        submit_and_wait(cb, fence);
        free_buffer(&staging);
    }
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "vkdirect: cannot open %s\n", path); exit(1); }
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    void *data = malloc(*size);
    if (!data || fread(data, 1, *size, f) != *size) { fprintf(stderr, "vkdirect: cannot read %s\n", path); exit(1); }
    fclose(f);
    return data;
}

static void global_barrier(VkCommandBuffer cb) {
    VkMemoryBarrier mb = {VK_STRUCTURE_TYPE_MEMORY_BARRIER};
    mb.srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_WRITE_BIT;
    mb.dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT | VK_ACCESS_TRANSFER_READ_BIT;
    vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT,
                         VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | VK_PIPELINE_STAGE_TRANSFER_BIT, 0, 1, &mb, 0, NULL, 0, NULL);
}

static void run_case(const Case *c, const char *spvdir) {
    VkCommandBufferAllocateInfo cai = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO};
    cai.commandPool = pool;
    cai.level = VK_COMMAND_BUFFER_LEVEL_PRIMARY;
    cai.commandBufferCount = 1;
    VkCommandBuffer cb;
    CHECK(vkAllocateCommandBuffers(device, &cai, &cb));
    VkFenceCreateInfo fci = {VK_STRUCTURE_TYPE_FENCE_CREATE_INFO};
    VkFence fence;
    CHECK(vkCreateFence(device, &fci, NULL, &fence));

    Buffer buffers[MAX_BUFFERS];
    for (int i = 0; i < c->nbuffers; i++) {
        buffers[i] = make_buffer(c->sizes[i], 1);
        fill(&buffers[i], c->sizes[i], cb, fence);
    }

    VkDescriptorPoolSize ps = {VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, MAX_DISPATCHES * MAX_BINDINGS};
    VkDescriptorPoolCreateInfo dpci = {VK_STRUCTURE_TYPE_DESCRIPTOR_POOL_CREATE_INFO};
    dpci.maxSets = MAX_DISPATCHES;
    dpci.poolSizeCount = 1;
    dpci.pPoolSizes = &ps;
    VkDescriptorPool dpool;
    CHECK(vkCreateDescriptorPool(device, &dpci, NULL, &dpool));

    VkQueryPoolCreateInfo qpci = {VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO};
    qpci.queryType = VK_QUERY_TYPE_TIMESTAMP;
    qpci.queryCount = 2;
    VkQueryPool qpool;
    CHECK(vkCreateQueryPool(device, &qpci, NULL, &qpool));

    VkPipeline pipelines[MAX_DISPATCHES];
    VkPipelineLayout layouts[MAX_DISPATCHES];
    VkDescriptorSetLayout setLayouts[MAX_DISPATCHES];
    VkShaderModule modules[MAX_DISPATCHES];
    VkDescriptorSet sets[MAX_DISPATCHES];
    for (int d = 0; d < c->ndispatches; d++) {
        const Dispatch *dp = &c->dispatches[d];
        char path[512];
        snprintf(path, sizeof path, "%s/%s.spv", spvdir, dp->shader);
        size_t size;
        void *code = read_file(path, &size);
        VkShaderModuleCreateInfo smci = {VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO};
        smci.codeSize = size;
        smci.pCode = code;
        CHECK(vkCreateShaderModule(device, &smci, NULL, &modules[d]));
        free(code);
        VkDescriptorSetLayoutBinding bindings[MAX_BINDINGS];
        for (int b = 0; b < dp->nb; b++) {
            VkDescriptorSetLayoutBinding x = {(uint32_t)b, VK_DESCRIPTOR_TYPE_STORAGE_BUFFER, 1, VK_SHADER_STAGE_COMPUTE_BIT, NULL};
            bindings[b] = x;
        }
        VkDescriptorSetLayoutCreateInfo dslci = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO};
        dslci.bindingCount = (uint32_t)dp->nb;
        dslci.pBindings = bindings;
        CHECK(vkCreateDescriptorSetLayout(device, &dslci, NULL, &setLayouts[d]));
        VkPushConstantRange range = {VK_SHADER_STAGE_COMPUTE_BIT, 0, 128};
        VkPipelineLayoutCreateInfo plci = {VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO};
        plci.setLayoutCount = 1;
        plci.pSetLayouts = &setLayouts[d];
        plci.pushConstantRangeCount = 1;
        plci.pPushConstantRanges = &range;
        CHECK(vkCreatePipelineLayout(device, &plci, NULL, &layouts[d]));
        VkComputePipelineCreateInfo cpci = {VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO};
        cpci.stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO;
        cpci.stage.stage = VK_SHADER_STAGE_COMPUTE_BIT;
        cpci.stage.module = modules[d];
        cpci.stage.pName = "main";
        cpci.layout = layouts[d];
        CHECK(vkCreateComputePipelines(device, VK_NULL_HANDLE, 1, &cpci, NULL, &pipelines[d]));
        VkDescriptorSetAllocateInfo dsai = {VK_STRUCTURE_TYPE_DESCRIPTOR_SET_ALLOCATE_INFO};
        dsai.descriptorPool = dpool;
        dsai.descriptorSetCount = 1;
        dsai.pSetLayouts = &setLayouts[d];
        CHECK(vkAllocateDescriptorSets(device, &dsai, &sets[d]));
        VkDescriptorBufferInfo infos[MAX_BINDINGS];
        VkWriteDescriptorSet writes[MAX_BINDINGS];
        for (int b = 0; b < dp->nb; b++) {
            infos[b].buffer = buffers[dp->bindings[b]].buffer;
            infos[b].offset = 0;
            infos[b].range = VK_WHOLE_SIZE;
            VkWriteDescriptorSet w = {VK_STRUCTURE_TYPE_WRITE_DESCRIPTOR_SET};
            w.dstSet = sets[d];
            w.dstBinding = (uint32_t)b;
            w.descriptorCount = 1;
            w.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER;
            w.pBufferInfo = &infos[b];
            writes[b] = w;
        }
        vkUpdateDescriptorSets(device, (uint32_t)dp->nb, writes, 0, NULL);
    }

    // Recorded once, like GPUHost's batch: entry barrier, stamp, dispatches with a barrier
    // between each, stamp, exit barrier.
    VkCommandBufferBeginInfo bi = {VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO};
    CHECK(vkBeginCommandBuffer(cb, &bi));
    vkCmdResetQueryPool(cb, qpool, 0, 2);
    global_barrier(cb);
    vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qpool, 0);
    for (int d = 0; d < c->ndispatches; d++) {
        const Dispatch *dp = &c->dispatches[d];
        if (d > 0) global_barrier(cb);
        vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, pipelines[d]);
        vkCmdBindDescriptorSets(cb, VK_PIPELINE_BIND_POINT_COMPUTE, layouts[d], 0, 1, &sets[d], 0, NULL);
        vkCmdPushConstants(cb, layouts[d], VK_SHADER_STAGE_COMPUTE_BIT, 0, (uint32_t)(dp->np * 4), dp->push);
        vkCmdDispatch(cb, dp->gx, dp->gy, 1);
    }
    vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, qpool, 1);
    global_barrier(cb);
    CHECK(vkEndCommandBuffer(cb));

    int warmup = 2, n = c->iterations;
    uint64_t *wall = calloc((size_t)n, 8), *dev = calloc((size_t)n, 8);
    uint64_t mask = validBits >= 64 ? UINT64_MAX : ((1ull << validBits) - 1);
    for (int i = -warmup; i < n; i++) {
        uint64_t t0 = now_ns();
        submit_and_wait(cb, fence);
        uint64_t t1 = now_ns();
        uint64_t stamps[2] = {0, 0};
        CHECK(vkGetQueryPoolResults(device, qpool, 0, 2, sizeof stamps, stamps, 8,
                                    VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT));
        if (i >= 0) {
            wall[i] = t1 - t0;
            dev[i] = (uint64_t)((double)((stamps[1] - stamps[0]) & mask) * period);
        }
    }
    qsort(wall, (size_t)n, 8, compare_u64);
    qsort(dev, (size_t)n, 8, compare_u64);
    printf("%s %llu %llu %llu\n", c->name, (unsigned long long)wall[n / 2], (unsigned long long)dev[n / 2],
           (unsigned long long)wall[0]);
    fflush(stdout);
    free(wall);
    free(dev);

    CHECK(vkDeviceWaitIdle(device));
    for (int d = 0; d < c->ndispatches; d++) {
        vkDestroyPipeline(device, pipelines[d], NULL);
        vkDestroyPipelineLayout(device, layouts[d], NULL);
        vkDestroyDescriptorSetLayout(device, setLayouts[d], NULL);
        vkDestroyShaderModule(device, modules[d], NULL);
    }
    vkDestroyDescriptorPool(device, dpool, NULL);
    vkDestroyQueryPool(device, qpool, NULL);
    for (int i = 0; i < c->nbuffers; i++) free_buffer(&buffers[i]);
    vkDestroyFence(device, fence, NULL);
    vkFreeCommandBuffers(device, pool, 1, &cb);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: vkdirect PLAN SPV_DIR\n"); return 2; }
    FILE *plan = fopen(argv[1], "r");
    if (!plan) { fprintf(stderr, "vkdirect: cannot open %s\n", argv[1]); return 1; }
    setup();
    Case c;
    char word[64];
    while (fscanf(plan, "%63s", word) == 1) {
        if (!strcmp(word, "case")) {
            memset(&c, 0, sizeof c);
            if (fscanf(plan, "%63s %d", c.name, &c.iterations) != 2 || c.iterations < 1) goto bad;
        } else if (!strcmp(word, "buffer")) {
            if (c.nbuffers >= MAX_BUFFERS) goto bad;
            unsigned long long size;
            if (fscanf(plan, "%llu", &size) != 1) goto bad;
            c.sizes[c.nbuffers++] = size;
        } else if (!strcmp(word, "dispatch")) {
            if (c.ndispatches >= MAX_DISPATCHES) goto bad;
            Dispatch *d = &c.dispatches[c.ndispatches++];
            if (fscanf(plan, "%63s %u %u %d", d->shader, &d->gx, &d->gy, &d->nb) != 4 || d->nb > MAX_BINDINGS) goto bad;
            for (int i = 0; i < d->nb; i++) {
                if (fscanf(plan, "%d", &d->bindings[i]) != 1 || d->bindings[i] < 0 || d->bindings[i] >= c.nbuffers) goto bad;
            }
            if (fscanf(plan, "%d", &d->np) != 1 || d->np > MAX_PUSH) goto bad;
            for (int i = 0; i < d->np; i++) {
                if (fscanf(plan, "%u", &d->push[i]) != 1) goto bad;
            }
        } else if (!strcmp(word, "end")) {
            run_case(&c, argv[2]);
        } else {
            goto bad;
        }
    }
    fclose(plan);
    return 0;
bad:
    fprintf(stderr, "vkdirect: malformed plan near '%s'\n", word);
    return 1;
}
