// tests/support/allocator_stats.h — comparing a caching allocator's books in one line.
#pragma once

#include "core/allocator.h"

namespace minidl::test {

// Every field of AllocatorStats equal, so that "nothing changed" can be checked in one line.
inline bool same(const AllocatorStats& a, const AllocatorStats& b) {
    return a.system_allocs == b.system_allocs && a.system_frees == b.system_frees &&
           a.cache_hits == b.cache_hits && a.bytes_in_use == b.bytes_in_use &&
           a.bytes_reserved == b.bytes_reserved && a.peak_bytes_in_use == b.peak_bytes_in_use &&
           a.bytes_cached == b.bytes_cached;
}

}  // namespace minidl::test
