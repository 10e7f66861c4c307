// ops/embedding.h — table lookups, differentiable with respect to the table.
//
//   embedding(w [V, C], ids [*]) -> [*, C]:  y[i] = w[ids[i]];  dw[v] = sum_{i: ids[i] = v} dy[i]
//   embedding_bag(w [V, C], ids [L], offsets [B]) -> [B, C]: bag b = ids[offsets[b]:offsets[b+1]];
//       sum: y[b] = sum_{i in b} w[ids[i]]    mean: divided by the bag's size (empty bag: 0)
//       dw[ids[i]] += dy[b] (sum) or dy[b] / |b| (mean)
//   embedding_bag(w, ids [B, L]) treats each row as a bag of L ids.
// padding_idx (-1 = none): that row gets no gradient; in a bag it is left out of sum and count.
// Every id is checked against [0, V) before any output is written: an IndexError names the id,
// its position and V.
#pragma once

#include "core/kernels.h"
#include "core/tensor.h"

namespace minidl {

Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx = -1);
Tensor embedding_bag(const Tensor& weight, const Tensor& ids, const Tensor& offsets,
                     BagMode mode = BagMode::Mean, int64_t padding_idx = -1);
Tensor embedding_bag(const Tensor& weight, const Tensor& ids_2d, BagMode mode = BagMode::Mean,
                     int64_t padding_idx = -1);

}  // namespace minidl
