#ifndef MALVVM_CVULKAN_SHIM_H
#define MALVVM_CVULKAN_SHIM_H

#include <stdint.h>
#include <vulkan/vulkan.h>

// Function-like and expression macros do not import into Swift; these give Swift the same
// values without re-deriving the bit layouts by hand.

static inline uint32_t malv_vk_make_api_version(uint32_t variant, uint32_t major,
                                                uint32_t minor, uint32_t patch) {
    return VK_MAKE_API_VERSION(variant, major, minor, patch);
}

static inline uint32_t malv_vk_api_version_major(uint32_t version) {
    return VK_API_VERSION_MAJOR(version);
}

static inline uint32_t malv_vk_api_version_minor(uint32_t version) {
    return VK_API_VERSION_MINOR(version);
}

static inline uint32_t malv_vk_api_version_patch(uint32_t version) {
    return VK_API_VERSION_PATCH(version);
}

static inline uint64_t malv_vk_whole_size(void) { return VK_WHOLE_SIZE; }

static inline uint32_t malv_vk_queue_family_ignored(void) { return VK_QUEUE_FAMILY_IGNORED; }

// VK_EXT_external_memory_host's one command: an extension command the loader does not export,
// so it is looked up on the device. Writes the memory types `pointer` can be imported as.
static inline VkResult malv_vk_host_pointer_memory_types(VkDevice device, const void *pointer,
                                                         uint32_t *memoryTypeBits) {
    PFN_vkGetMemoryHostPointerPropertiesEXT get = (PFN_vkGetMemoryHostPointerPropertiesEXT)
        vkGetDeviceProcAddr(device, "vkGetMemoryHostPointerPropertiesEXT");
    if (get == NULL) return VK_ERROR_EXTENSION_NOT_PRESENT;
    VkMemoryHostPointerPropertiesEXT properties = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT,
    };
    VkResult result = get(device, VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, pointer, &properties);
    if (result == VK_SUCCESS) *memoryTypeBits = properties.memoryTypeBits;
    return result;
}

#endif
