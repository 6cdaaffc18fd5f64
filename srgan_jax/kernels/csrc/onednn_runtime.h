// What every oneDNN handler of this library shares (onednn_conv.cc, onednn_bn.cc): the engine,
// aligned scratch buffers, a bounded LRU cache of primitives, and the threads that call oneDNN.
//
// Threads: oneDNN's OpenMP build gives every thread that enters it a team of
// its own, and XLA:CPU calls these handlers from any thread of its pool, so
// teams (and threads) would pile up, one per pool thread. Here the first thread
// that calls a handler runs its calls itself (XLA:CPU makes most calls from one
// thread, and a hand-over costs a wake-up per call: 7x slower inference on a
// loaded 2-core machine when every call went to a worker); calls from any other
// thread go to one worker thread. So at most two teams exist, each sized to the
// cores this process may use, and a mutex keeps only one of them busy at a time.
// The functions are inline (one instance across the library's files: one worker, one mutex).
#pragma once

#include <omp.h>
#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "oneapi/dnnl/dnnl.hpp"
#include "xla/ffi/api/ffi.h"

namespace srgan_onednn {

inline dnnl::engine& Engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

struct Buf {  // 64-byte aligned scratch
  explicit Buf(size_t bytes) : p(bytes ? std::aligned_alloc(64, (bytes + 63) / 64 * 64) : nullptr) {
    if (bytes && !p) throw std::bad_alloc();
  }
  ~Buf() { std::free(p); }
  void* p;
};

// A bounded cache of built primitives by key: least recently used entries go first.
template <class Entry>
class Cache {
 public:
  explicit Cache(int64_t capacity) : capacity_(capacity) {}
  std::shared_ptr<Entry> Get(const std::string& key, const std::function<std::shared_ptr<Entry>()>& build) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = index_.find(key);
      if (it != index_.end()) {
        order_.splice(order_.begin(), order_, it->second);
        return it->second->second;
      }
    }
    auto e = build();  // outside the lock: building takes a while; a twin build is harmless
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.count(key)) return index_[key]->second;
    order_.emplace_front(key, e);
    index_[key] = order_.begin();
    Trim();
    return e;
  }
  void SetCapacity(int64_t capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    capacity_ = capacity < 1 ? 1 : capacity;
    Trim();
  }
  void Info(int64_t* size, int64_t* capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    *size = static_cast<int64_t>(index_.size());
    *capacity = capacity_;
  }

 private:
  void Trim() {
    while (static_cast<int64_t>(index_.size()) > capacity_) {
      index_.erase(order_.back().first);
      order_.pop_back();
    }
  }
  std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<Entry>>> order_;  // most recent first
  std::unordered_map<std::string, typename decltype(order_)::iterator> index_;
  int64_t capacity_;
};

// ----------------------------------------------------------------------------
// The one thread that calls oneDNN, and its OpenMP team.

inline int UsableCores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return CPU_COUNT(&set);
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<int>(n) : 1;
}

// Threads of a team: OMP_NUM_THREADS (default: the cores), but no more than the usable cores.
inline int TeamSize() { return std::max(1, std::min(omp_get_max_threads(), UsableCores())); }

class Worker {
 public:
  // The worker of this process (a forked child gets a new one: threads do not survive fork).
  static Worker& Get() {
    static std::mutex mu;
    static Worker* worker = nullptr;
    std::lock_guard<std::mutex> lock(mu);
    if (worker == nullptr || worker->pid_ != getpid()) worker = new Worker();  // never destroyed
    return *worker;
  }

  // Runs `job` on the worker thread; returns its error message, empty on success.
  std::string Run(const std::function<void()>& job) {
    Task task{&job};
    std::unique_lock<std::mutex> lock(mu_);
    queue_.push_back(&task);
    cv_.notify_all();
    cv_.wait(lock, [&] { return task.done; });
    return task.error;
  }

  int threads() const { return threads_; }

  // Runs `job` on the calling thread while no other oneDNN call runs; its error message or "".
  static std::string Guarded(const std::function<void()>& job) {
    static std::mutex busy;
    std::lock_guard<std::mutex> lock(busy);
    try {
      job();
    } catch (const dnnl::error& err) {
      return std::string("oneDNN: ") + err.what();
    } catch (const std::exception& err) {  // e.g. bad_alloc: never let it cross the FFI boundary
      return std::string("oneDNN: ") + err.what();
    } catch (...) {
      return "oneDNN: unknown exception";
    }
    return "";
  }

 private:
  struct Task {
    const std::function<void()>* job;
    bool done = false;
    std::string error;
  };

  Worker() : pid_(getpid()), threads_(TeamSize()) {
    std::thread([this] { Loop(); }).detach();
  }

  void Loop() {
    omp_set_num_threads(threads_);
    for (;;) {
      Task* task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return !queue_.empty(); });
        task = queue_.front();
        queue_.pop_front();
      }
      std::string error = Guarded(*task->job);
      std::lock_guard<std::mutex> lock(mu_);
      task->error = std::move(error);
      task->done = true;
      cv_.notify_all();
    }
  }

  const pid_t pid_;
  const int threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Task*> queue_;
};

// Runs `job` on this thread if it is the first that ever called (its team is the main one),
// else on the worker; one job at a time. Returns its error message, empty on success.
inline std::string Execute(const std::function<void()>& job) {
  static std::atomic<bool> claimed{false};
  thread_local bool owner = [] {
    bool expected = false;
    if (!claimed.compare_exchange_strong(expected, true)) return false;
    omp_set_num_threads(TeamSize());  // this thread's team: no more than the cores
    return true;
  }();
  if (owner) return Worker::Guarded(job);
  return Worker::Get().Run(job);
}

// The FFI status of a handler whose job returned `error` (Execute's result; empty: success).
inline xla::ffi::Error Finish(const std::string& error) {
  if (!error.empty()) return xla::ffi::Error(xla::ffi::ErrorCode::kInternal, error);
  return xla::ffi::Error::Success();
}

// A probe's answer into the caller's buffer: `text`, cut to why_size - 1 bytes, NUL-terminated.
inline void WriteWhy(const std::string& text, char* why, int64_t why_size) {
  if (why_size <= 0) return;
  std::strncpy(why, text.c_str(), static_cast<size_t>(why_size - 1));
  why[why_size - 1] = '\0';
}

// Runs body(t, lo, hi) for the chunks [lo, hi) of [0, m) on an OpenMP team of at most
// `teams` threads (one chunk per thread, in order); returns how many chunks there were.
inline int ForChunks(int64_t m, int64_t min_chunk, const std::function<void(int, int64_t, int64_t)>& body) {
  const int teams = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(m / min_chunk + 1)));
#pragma omp parallel num_threads(teams)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    body(t, m * t / n, m * (t + 1) / n);
  }
  return teams;
}

}  // namespace srgan_onednn
