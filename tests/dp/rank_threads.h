// tests/dp/rank_threads.h — run_ranks(n, fn): fn(r) on n threads at once (the ranks of an
// in-process group), joined; the first exception (by rank) is rethrown on the caller.
#pragma once

#include <exception>
#include <functional>
#include <thread>
#include <vector>

namespace minidl::test {

inline void run_ranks(int n, const std::function<void(int)>& fn) {
    std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
    std::vector<std::thread> threads;
    for (int r = 0; r < n; ++r)
        threads.emplace_back([&, r] {
            try {
                fn(r);
            } catch (...) {
                errors[static_cast<size_t>(r)] = std::current_exception();
            }
        });
    for (auto& t : threads)
        t.join();
    for (const auto& e : errors)
        if (e) std::rethrow_exception(e);
}

}  // namespace minidl::test
