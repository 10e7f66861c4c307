// core/parallel.cpp — a small persistent thread pool (see parallel.h).
//
// One job at a time: the caller publishes (fn, n, chunk), wakes the workers, and everybody —
// caller included — takes chunks from an atomic counter until none is left. The caller then waits
// until every worker has left the job before returning, so fn's captured references stay valid.
#include "core/parallel.h"

#include <sched.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "core/check.h"

namespace minidl {

namespace {

thread_local bool tls_in_pool_job = false;

// detail::refuse_thread_starts_after: worker starts left before one is refused (negative: none).
std::atomic<int> g_starts_before_refusal{-1};

bool thread_start_refused() {
    int left = g_starts_before_refusal.load();
    while (left >= 0 &&
           !g_starts_before_refusal.compare_exchange_weak(left, left > 0 ? left - 1 : -1)) {
    }
    return left == 0;
}

int default_threads() {
    if (const char* env = std::getenv("MINIDL_NUM_THREADS")) {
        const int n = std::atoi(env);
        if (n >= 1) return n;
    }
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
}

class ThreadPool {
  public:
    explicit ThreadPool(int threads) { start(threads); }
    ~ThreadPool() { stop(); }

    int threads() const { return threads_; }

    // On failure (the system refuses a thread: RLIMIT_NPROC, cgroup pids.max, memory for the
    // stacks), the pool goes back to its previous size and a ValueError names the count asked for.
    void resize(int threads) {
        std::lock_guard<std::mutex> call(call_mutex_);
        const int previous = threads_;
        stop();
        std::string why;
        const int started = try_start(threads, why);
        if (started == threads) return;
        stop();
        // The previous size worked before; should even that fail now, one thread needs no worker.
        std::string ignored;
        if (try_start(previous, ignored) != previous) try_start(1, ignored);
        throw ValueError(detail::concat("set_num_threads: cannot start ", threads,
                                        " threads: the system refused thread ", started + 1, " (",
                                        why, "); the pool keeps ", threads_, " thread",
                                        threads_ == 1 ? "" : "s"));
    }

    void run(int64_t n, int64_t grain, detail::RangeFn fn) {
        std::unique_lock<std::mutex> call(call_mutex_, std::try_to_lock);
        if (!call.owns_lock() || tls_in_pool_job || threads_ == 1) {
            fn.call(fn.ctx, 0, n);  // busy, nested or single-threaded: run inline
            return;
        }
        // Chunks: at least `grain` long, about 4 per thread for balance.
        const int64_t max_chunks = std::max<int64_t>(1, n / grain);
        const int64_t chunks = std::min<int64_t>(max_chunks, int64_t{threads_} * 4);
        {
            std::lock_guard<std::mutex> lock(mutex_);
            job_ = fn;
            job_n_ = n;
            job_chunks_ = chunks;
            next_chunk_.store(0);
            busy_workers_ = threads_ - 1;
            ++generation_;
        }
        wake_.notify_all();
        work_on_job();
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [&] { return busy_workers_ == 0; });
        if (error_) {
            std::exception_ptr e = std::exchange(error_, nullptr);
            std::rethrow_exception(e);
        }
    }

  private:
    void start(int threads) {
        std::string why;
        const int started = try_start(threads, why);
        if (started != threads) {
            stop();
            try_start(1, why);
        }
    }

    // Starts threads - 1 workers (the caller is the first thread). Returns how many threads run
    // (threads_), with the system's reason in `why` when it refused one before all had started.
    int try_start(int threads, std::string& why) {
        shutting_down_ = false;
        threads_ = 1;
        for (int i = 1; i < threads; ++i) {
            try {
                if (thread_start_refused())
                    throw std::system_error(
                        std::make_error_code(std::errc::resource_unavailable_try_again));
                // A new worker must wait for the next job, not take the last one for new.
                workers_.emplace_back([this, seen = generation_] { worker_loop(seen); });
            } catch (const std::system_error& e) {
                why = e.what();
                return threads_;
            }
            threads_ = i + 1;
        }
        return threads_;
    }

    void stop() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            shutting_down_ = true;
        }
        wake_.notify_all();
        for (auto& w : workers_)
            w.join();
        workers_.clear();
    }

    void work_on_job() {
        tls_in_pool_job = true;
        try {
            for (;;) {
                const int64_t c = next_chunk_.fetch_add(1);
                if (c >= job_chunks_) break;
                const int64_t begin = job_n_ * c / job_chunks_;
                const int64_t end = job_n_ * (c + 1) / job_chunks_;
                job_.call(job_.ctx, begin, end);
            }
        } catch (...) {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!error_) error_ = std::current_exception();
            next_chunk_.store(job_chunks_);  // stop handing out work
        }
        tls_in_pool_job = false;
    }

    void worker_loop(uint64_t seen) {
        for (;;) {
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [&] { return shutting_down_ || generation_ != seen; });
                if (shutting_down_) return;
                seen = generation_;
            }
            work_on_job();
            std::lock_guard<std::mutex> lock(mutex_);
            if (--busy_workers_ == 0) done_.notify_one();
        }
    }

    int threads_ = 1;
    std::vector<std::thread> workers_;
    std::mutex call_mutex_;  // one job at a time
    std::mutex mutex_;
    std::condition_variable wake_, done_;
    bool shutting_down_ = false;
    uint64_t generation_ = 0;
    int busy_workers_ = 0;
    detail::RangeFn job_{};
    int64_t job_n_ = 0, job_chunks_ = 0;
    std::atomic<int64_t> next_chunk_{0};
    std::exception_ptr error_;
};

ThreadPool& pool() {
    // Leaked on purpose: joining threads during static destruction is fragile.
    static ThreadPool* instance = new ThreadPool(default_threads());
    return *instance;
}

}  // namespace

void set_num_threads(int n) {
    MDL_CHECK(n >= 1, ValueError, "set_num_threads: need at least 1 thread, got ", n);
    if (n != pool().threads()) pool().resize(n);
}

int get_num_threads() {
    return pool().threads();
}

namespace detail {
void refuse_thread_starts_after(int n) {
    g_starts_before_refusal.store(n < 0 ? -1 : n);
}

void parallel_for_impl(int64_t n, int64_t grain, RangeFn fn) {
    pool().run(n, grain, fn);
}
}  // namespace detail

}  // namespace minidl
