// core/storage.cpp — see storage.h.
#include "core/storage.h"

#include "core/allocator.h"

namespace minidl {

Storage::Storage(size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
    if (nbytes_ > 0) data_ = allocator_for(device_).allocate(nbytes_);
}

Storage::~Storage() {
    if (data_ != nullptr) allocator_for(device_).deallocate(data_, nbytes_);
}

}  // namespace minidl
