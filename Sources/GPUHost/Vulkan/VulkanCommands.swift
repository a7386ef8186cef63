import CVulkan

/// The few command-recording idioms the backend repeats, named.
enum VulkanCommands {
    /// A global memory barrier. Global barriers are what vendors recommend for compute
    /// chains: per-buffer barriers buy nothing on current hardware and cost recording time.
    static func memoryBarrier(_ commandBuffer: VkCommandBuffer,
                              from srcStage: VkPipelineStageFlagBits, _ srcAccess: UInt32,
                              to dstStage: VkPipelineStageFlagBits, _ dstAccess: UInt32,
                              extraSrcStages: UInt32 = 0, extraDstStages: UInt32 = 0) {
        var barrier = VkMemoryBarrier()
        barrier.sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER
        barrier.srcAccessMask = srcAccess
        barrier.dstAccessMask = dstAccess
        vkCmdPipelineBarrier(commandBuffer, srcStage.rawValue | extraSrcStages, dstStage.rawValue | extraDstStages,
                             0, 1, &barrier, 0, nil, 0, nil)
    }

    /// Orders this command buffer after everything earlier on the queue (other batches,
    /// staging copies): barriers reach across submissions on one queue, so batches never
    /// overlap, and each batch's timestamps bracket only its own work.
    static func enterBatch(_ commandBuffer: VkCommandBuffer) {
        memoryBarrier(commandBuffer,
                      from: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                      VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                      VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue
                          | VK_ACCESS_TRANSFER_READ_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue,
                      extraSrcStages: VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue,
                      extraDstStages: VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue)
    }

    /// Makes the batch's writes available to the host (mapped reads after the fence) and to
    /// later transfers.
    static func leaveBatch(_ commandBuffer: VkCommandBuffer) {
        memoryBarrier(commandBuffer,
                      from: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                      VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_HOST_BIT,
                      VK_ACCESS_HOST_READ_BIT.rawValue | VK_ACCESS_TRANSFER_READ_BIT.rawValue,
                      extraSrcStages: VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue,
                      extraDstStages: VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue)
    }

    /// After a batch's staged uploads, before its first dispatch reads what they wrote.
    static func transferToCompute(_ commandBuffer: VkCommandBuffer) {
        memoryBarrier(commandBuffer,
                      from: VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                      VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue)
    }

    /// After a batch's last dispatch (and its uploads, for ranges no kernel wrote), before
    /// the copies into staging that take its downloads. `leaveBatch` then makes the staging
    /// writes visible to the host.
    static func computeToTransfer(_ commandBuffer: VkCommandBuffer) {
        memoryBarrier(commandBuffer,
                      from: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                      VK_ACCESS_SHADER_WRITE_BIT.rawValue | VK_ACCESS_TRANSFER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_TRANSFER_BIT, VK_ACCESS_TRANSFER_READ_BIT.rawValue,
                      extraSrcStages: VK_PIPELINE_STAGE_TRANSFER_BIT.rawValue)
    }

    /// Between dependent dispatches of one batch.
    static func computeToCompute(_ commandBuffer: VkCommandBuffer) {
        memoryBarrier(commandBuffer,
                      from: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT, VK_ACCESS_SHADER_WRITE_BIT.rawValue,
                      to: VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT,
                      VK_ACCESS_SHADER_READ_BIT.rawValue | VK_ACCESS_SHADER_WRITE_BIT.rawValue)
    }
}
