import CVulkan

/// Owns everything one compute kernel needs to be bound: its shader module, a descriptor set
/// layout of `bindingCount` storage buffers, the pipeline layout and the pipeline.
final class VulkanPipeline {
    /// Every layout declares the 128 bytes Vulkan guarantees; each shader's push-constant
    /// block fits inside it.
    static let pushConstantBytes: UInt32 = 128

    let device: VulkanDevice
    let shader: ShaderKernel
    let module: VkShaderModule
    let setLayout: VkDescriptorSetLayout
    let layout: VkPipelineLayout
    let pipeline: VkPipeline

    init(device: VulkanDevice, shader: ShaderKernel) throws(GPUError) {
        guard let code = shader.spirv, !code.isEmpty else {
            throw .shaderMissing(kernel: shader.rawValue)
        }
        let dev = device.handle
        var module: VkShaderModule?
        let moduleResult = code.withUnsafeBufferPointer { words in
            var info = VkShaderModuleCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO
            info.codeSize = words.count * MemoryLayout<UInt32>.size
            info.pCode = words.baseAddress
            return vkCreateShaderModule(dev, &info, nil, &module)
        }
        try vkCheck(moduleResult, "vkCreateShaderModule")
        guard let module else {
            throw .vulkan(call: "vkCreateShaderModule", result: VulkanResult(rawValue: VK_ERROR_INITIALIZATION_FAILED.rawValue))
        }

        var bindings = (0 ..< shader.bindingCount).map { index in
            var binding = VkDescriptorSetLayoutBinding()
            binding.binding = UInt32(index)
            binding.descriptorType = VK_DESCRIPTOR_TYPE_STORAGE_BUFFER
            binding.descriptorCount = 1
            binding.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT.rawValue
            return binding
        }
        var setLayout: VkDescriptorSetLayout?
        let setLayoutResult = bindings.withUnsafeMutableBufferPointer { pointer in
            var info = VkDescriptorSetLayoutCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_DESCRIPTOR_SET_LAYOUT_CREATE_INFO
            info.bindingCount = UInt32(pointer.count)
            info.pBindings = UnsafePointer(pointer.baseAddress)
            return vkCreateDescriptorSetLayout(dev, &info, nil, &setLayout)
        }
        guard setLayoutResult == VK_SUCCESS, let setLayout else {
            vkDestroyShaderModule(dev, module, nil)
            throw .vulkan(call: "vkCreateDescriptorSetLayout", result: VulkanResult(rawValue: setLayoutResult.rawValue))
        }

        var pushRange = VkPushConstantRange()
        pushRange.stageFlags = VK_SHADER_STAGE_COMPUTE_BIT.rawValue
        pushRange.offset = 0
        pushRange.size = Self.pushConstantBytes
        var setLayouts: [VkDescriptorSetLayout?] = [setLayout]
        var layout: VkPipelineLayout?
        let layoutResult = setLayouts.withUnsafeMutableBufferPointer { layouts in
            withUnsafePointer(to: &pushRange) { range in
                var info = VkPipelineLayoutCreateInfo()
                info.sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO
                info.setLayoutCount = 1
                info.pSetLayouts = UnsafePointer(layouts.baseAddress)
                info.pushConstantRangeCount = 1
                info.pPushConstantRanges = range
                return vkCreatePipelineLayout(dev, &info, nil, &layout)
            }
        }
        guard layoutResult == VK_SUCCESS, let layout else {
            vkDestroyDescriptorSetLayout(dev, setLayout, nil)
            vkDestroyShaderModule(dev, module, nil)
            throw .vulkan(call: "vkCreatePipelineLayout", result: VulkanResult(rawValue: layoutResult.rawValue))
        }

        var pipeline: VkPipeline?
        let pipelineResult = "main".withCString { entry in
            var stage = VkPipelineShaderStageCreateInfo()
            stage.sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO
            stage.stage = VK_SHADER_STAGE_COMPUTE_BIT
            stage.module = module
            stage.pName = entry
            var info = VkComputePipelineCreateInfo()
            info.sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO
            info.stage = stage
            info.layout = layout
            return vkCreateComputePipelines(dev, nil, 1, &info, nil, &pipeline)
        }
        guard pipelineResult == VK_SUCCESS, let pipeline else {
            vkDestroyPipelineLayout(dev, layout, nil)
            vkDestroyDescriptorSetLayout(dev, setLayout, nil)
            vkDestroyShaderModule(dev, module, nil)
            throw .vulkan(call: "vkCreateComputePipelines", result: VulkanResult(rawValue: pipelineResult.rawValue))
        }

        self.device = device
        self.shader = shader
        self.module = module
        self.setLayout = setLayout
        self.layout = layout
        self.pipeline = pipeline
    }

    deinit {
        let dev = device.handle
        vkDestroyPipeline(dev, pipeline, nil)
        vkDestroyPipelineLayout(dev, layout, nil)
        vkDestroyDescriptorSetLayout(dev, setLayout, nil)
        vkDestroyShaderModule(dev, module, nil)
    }
}
