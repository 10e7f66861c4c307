// minidl/minidl.h — everything a program needs: tensors, autograd, ops, layers, optimizers and
// the training tricks. Include this one header (installed as <minidl/minidl.h>).
#pragma once

#include "core/autocast.h"
#include "core/autograd.h"
#include "core/backend.h"
#include "core/check.h"
#include "core/device.h"
#include "core/dtype.h"
#include "core/kernels.h"
#include "core/parallel.h"
#include "core/rng.h"
#include "core/shape.h"
#include "core/state_dict.h"
#include "core/tensor.h"
#include "ops/ops.h"
