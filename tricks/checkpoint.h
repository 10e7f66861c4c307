// tricks/checkpoint.h — activation checkpointing: trade compute for memory by recomputing a block
// during backward instead of keeping its activations (torch.utils.checkpoint).
//
// Chen et al. 2016, "Training Deep Nets with Sublinear Memory Cost", arXiv:1604.06174. For a block
// y = f(x; θ) inside a network:
//   forward   y = f(x) runs with grad mode off: none of f's intermediate tensors is kept, only
//             the block's inputs x (and the generator and autocast state at the call);
//   backward  given dL/dy: x' = detach(x) (requiring grad where x did), the generator state rolled
//             back to the forward's so that dropout draws the same masks, the autocast state as at
//             the forward; y' = f(x') recorded; then backward of y' with dL/dy within the running
//             pass: dL/dθ accumulates into θ.grad as without checkpointing, and dL/dx = x'.grad is
//             the node's result. The generators are then put back where backward found them.
// The memory of a block's activations (for an encoder layer, the projections, the GELU input and
// output, LayerNorm statistics: about 10 × [B, L, C] plus [B, L, I]) is held only while one block's
// backward runs; the cost is a second forward of each checkpointed block.
//
// Same numbers: the recomputed forward is bitwise the first one (deterministic kernels, the same
// generator offsets, the same autocast state), so with the same thread count every gradient is
// bitwise what it is without checkpointing (tests/tricks/test_checkpoint.cpp).
//
// Contract and limits (those of PyTorch's reentrant checkpoint):
//   - f must be a function of its inputs and of module parameters, drawing randomness only from
//     the generators given (default: the process-wide default generator) — like FreeLB's replay,
//     replicas that share the default generator in threads are then not reproducible;
//   - when no input requires grad, the parameters' gradients could not be reached through the
//     node: f then runs without checkpointing (correct gradients, no memory saved);
//   - a parameter used both inside and outside the block gets its hooks fired once per pass that
//     reaches it (once inside the recomputation, once outside).
#pragma once

#include <functional>
#include <vector>

#include "core/rng.h"
#include "core/tensor.h"

namespace minidl::tricks {

using CheckpointFn = std::function<Tensor(const std::vector<Tensor>& inputs)>;

// y = fn(inputs), recomputed during backward instead of stored. `generators`: those fn draws from
// (empty: the default generator).
Tensor checkpoint(const CheckpointFn& fn, const std::vector<Tensor>& inputs,
                  const std::vector<Generator*>& generators = {});

}  // namespace minidl::tricks
