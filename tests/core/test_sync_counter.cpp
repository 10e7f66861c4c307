// tests/core/test_sync_counter.cpp — core/sync_counter.h: a count bumped from many threads loses
// nothing, and scopes measure the events since they began, nested or overlapping; and
// cuda::host_syncs / cuda::HostSyncScope (core/backend.h), which count nothing here unless a GPU
// did some work.
#include <doctest/doctest.h>

#include <cstdint>
#include <thread>
#include <vector>

#include "core/backend.h"
#include "core/sync_counter.h"

using namespace minidl;

TEST_CASE("core/sync_counter: counts every add, from every thread") {
    SyncCounter counter;
    CHECK(counter.count() == 0);
    counter.add();
    counter.add(2);
    CHECK(counter.count() == 3);

    constexpr int kThreads = 4, kAdds = 10000;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&] {
            for (int i = 0; i < kAdds; ++i)
                counter.add();
        });
    for (auto& t : threads)
        t.join();
    CHECK(counter.count() == 3 + uint64_t{kThreads} * kAdds);
}

TEST_CASE("core/sync_counter: a scope measures the events since it began") {
    SyncCounter counter;
    counter.add(5);  // before the scope: not its business
    SyncScope outer(counter);
    CHECK(outer.count() == 0);
    counter.add();
    {
        SyncScope inner(counter);
        counter.add(2);
        CHECK(inner.count() == 2);
    }
    CHECK(outer.count() == 3);
    SyncScope late(counter);
    counter.add();
    CHECK(late.count() == 1);
    CHECK(outer.count() == 4);
    CHECK(counter.count() == 9);
}

TEST_CASE("core/backend: host_syncs counts no synchronisation that did not happen") {
    const uint64_t before = cuda::host_syncs();
    cuda::HostSyncScope scope;
    CHECK(cuda::host_syncs() == cuda::host_sync_counter().count());
    if (!cuda::built_with_cuda()) CHECK(before == 0);
    // Nothing here touches a GPU (the CPU suite runs on the CPU even when one is present).
    CHECK(scope.count() == 0);
}
