#pragma once

// Runs CUDA kernel code on the CPU: the built-ins that device code uses
// (blockIdx, threadIdx, blockDim, gridDim, __syncthreads, dynamic shared
// memory, the __global__/__device__ qualifiers) and launch(), which runs a
// kernel's grid block by block, each block's threads as fibers (ucontext)
// on one OS thread.
//
// Within a block, a thread runs until it reaches __syncthreads() or
// returns; then the next thread runs. A barrier phase ends when every thread
// of the block waits at the barrier; the threads then resume in the order
// of the schedule: as launched, reversed, or a seeded shuffle drawn anew for
// every phase. A thread that returns while others wait at a barrier (or the
// reverse) is reported as an error: on a GPU it is a hang or undefined.
//
// Each block's dynamic shared memory is its own heap allocation of exactly
// the launch's size, filled with 0xff bytes (NaN in every float type), so
// that AddressSanitizer reports an access past its end and a read of a
// value no thread staged shows up in the results.
//
// Include this header before any device code.

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <sys/mman.h>
#include <ucontext.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CUDA_ON_CPU_ASAN 1
#endif

namespace cuda_on_cpu {

struct Dim3 {
  unsigned int x = 0, y = 0, z = 0;
};

} // namespace cuda_on_cpu

// The built-in variables, in the global namespace as in CUDA. One OS thread
// runs every fiber, so plain variables suffice; the scheduler sets them
// before it resumes a fiber.
inline cuda_on_cpu::Dim3 threadIdx;
inline cuda_on_cpu::Dim3 blockIdx;
inline cuda_on_cpu::Dim3 blockDim;
inline cuda_on_cpu::Dim3 gridDim;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)

namespace cuda_on_cpu {

enum class Order { kForward, kReversed, kShuffled };

struct Schedule {
  Order order = Order::kForward;
  uint64_t seed = 0;
};

class BlockRunner {
 public:
  static BlockRunner& get() {
    static BlockRunner runner;
    return runner;
  }

  Schedule schedule;

  // Runs thread_body once per thread of every block of the grid.
  void run_grid(
      unsigned int blocks, unsigned int threads, size_t shared_bytes,
      const std::function<void()>& thread_body) {
    if (threads == 0 || threads > kMaxThreadsPerBlock) {
      throw std::runtime_error(
          "cuda_on_cpu: invalid block size " + std::to_string(threads));
    }
    if (shared_bytes > kMaxSharedBytes) {
      throw std::runtime_error(
          "cuda_on_cpu: " + std::to_string(shared_bytes) +
          " bytes of dynamic shared memory requested, above the 48 KiB default limit");
    }
    body_ = &thread_body;
    gridDim = Dim3{blocks, 1, 1};
    blockDim = Dim3{threads, 1, 1};
    std::mt19937_64 rng(schedule.seed);
    for (unsigned int b = 0; b < blocks; ++b) {
      blockIdx = Dim3{b, 0, 0};
      run_block(threads, shared_bytes, rng);
    }
    body_ = nullptr;
  }

  void* shared_memory() const {
    return shared_;
  }

  // __syncthreads() from the running fiber.
  void barrier() {
    Fiber& f = fibers_[current_];
    f.state = State::kAtBarrier;
    switch_to_scheduler(f);
  }

 private:
  static constexpr unsigned int kMaxThreadsPerBlock = 1024;
  static constexpr size_t kMaxSharedBytes = 48 * 1024;
#if defined(CUDA_ON_CPU_ASAN)
  static constexpr size_t kStackBytes = 512 * 1024;
#else
  static constexpr size_t kStackBytes = 128 * 1024;
#endif

  enum class State { kRunnable, kAtBarrier, kDone };

  struct Fiber {
    ucontext_t context;
    char* stack = nullptr;
    State state = State::kRunnable;
    std::exception_ptr error;
  };

  BlockRunner() {
    fibers_.resize(kMaxThreadsPerBlock);
    // Stacks are mapped once and reused; pages are committed when touched.
    stacks_ = static_cast<char*>(mmap(
        nullptr, kStackBytes * kMaxThreadsPerBlock, PROT_READ | PROT_WRITE,
        MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
    if (stacks_ == MAP_FAILED) {
      throw std::runtime_error("cuda_on_cpu: cannot map the fiber stacks");
    }
    for (unsigned int t = 0; t < kMaxThreadsPerBlock; ++t) {
      fibers_[t].stack = stacks_ + t * kStackBytes;
    }
  }

  static void fiber_main() {
    BlockRunner& self = get();
#if defined(CUDA_ON_CPU_ASAN)
    __sanitizer_finish_switch_fiber(nullptr, &self.scheduler_stack_, &self.scheduler_stack_size_);
#endif
    Fiber& f = self.fibers_[self.current_];
    try {
      (*self.body_)();
    } catch (...) {
      f.error = std::current_exception();
    }
    f.state = State::kDone;
#if defined(CUDA_ON_CPU_ASAN)
    __sanitizer_start_switch_fiber(nullptr, self.scheduler_stack_, self.scheduler_stack_size_);
#endif
    setcontext(&self.scheduler_);
  }

  void switch_to_scheduler(Fiber& f) {
#if defined(CUDA_ON_CPU_ASAN)
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, scheduler_stack_, scheduler_stack_size_);
#endif
    swapcontext(&f.context, &scheduler_);
#if defined(CUDA_ON_CPU_ASAN)
    __sanitizer_finish_switch_fiber(fake_stack, &scheduler_stack_, &scheduler_stack_size_);
#endif
  }

  void resume(unsigned int t) {
    current_ = t;
    threadIdx = Dim3{t, 0, 0};
    Fiber& f = fibers_[t];
    f.state = State::kRunnable;
#if defined(CUDA_ON_CPU_ASAN)
    void* fake_stack = nullptr;
    __sanitizer_start_switch_fiber(&fake_stack, f.stack, kStackBytes);
#endif
    swapcontext(&scheduler_, &f.context);
#if defined(CUDA_ON_CPU_ASAN)
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#endif
  }

  void run_block(unsigned int threads, size_t shared_bytes, std::mt19937_64& rng) {
    unsigned char* shared = shared_bytes ? new unsigned char[shared_bytes] : nullptr;
    if (shared) {
      std::memset(shared, 0xff, shared_bytes);
    }
    shared_ = shared;
    for (unsigned int t = 0; t < threads; ++t) {
      Fiber& f = fibers_[t];
      getcontext(&f.context);
      f.context.uc_stack.ss_sp = f.stack;
      f.context.uc_stack.ss_size = kStackBytes;
      f.context.uc_link = nullptr;
      f.error = nullptr;
      makecontext(&f.context, &BlockRunner::fiber_main, 0);
      // makecontext has placed the stack; swapcontext does not read
      // uc_stack, but AddressSanitizer's swapcontext clears the shadow of
      // the whole target stack on every switch when it is set.
      f.context.uc_stack.ss_sp = nullptr;
      f.context.uc_stack.ss_size = 0;
    }
    std::vector<unsigned int> order(threads);
    std::string failure;
    unsigned int phase = 0;
    for (;; ++phase) {
      for (unsigned int t = 0; t < threads; ++t) {
        order[t] = schedule.order == Order::kReversed ? threads - 1 - t : t;
      }
      if (schedule.order == Order::kShuffled) {
        std::shuffle(order.begin(), order.end(), rng);
      }
      for (unsigned int t : order) {
        resume(t);
      }
      unsigned int done = 0, waiting = 0;
      for (unsigned int t = 0; t < threads; ++t) {
        done += fibers_[t].state == State::kDone;
        waiting += fibers_[t].state == State::kAtBarrier;
      }
      std::exception_ptr error;
      for (unsigned int t = 0; t < threads && !error; ++t) {
        error = fibers_[t].error;
      }
      if (error) {
        abandon_block(threads);
        delete[] shared;
        shared_ = nullptr;
        std::rethrow_exception(error);
      }
      if (done == threads) {
        break;
      }
      if (done != 0) {
        failure = "cuda_on_cpu: block " + std::to_string(blockIdx.x) + ": " +
            std::to_string(waiting) + " of " + std::to_string(threads) +
            " threads wait at __syncthreads() number " + std::to_string(phase + 1) +
            " while the other " + std::to_string(done) + " have returned";
        break;
      }
    }
    if (!failure.empty()) {
      abandon_block(threads);
    }
    delete[] shared;
    shared_ = nullptr;
    if (!failure.empty()) {
      throw std::runtime_error(failure);
    }
  }

  // Fibers left at a barrier never return: their frames stay on the stacks.
  // Under AddressSanitizer the frames' poisoned redzones would then be
  // reported when a later block reuses the stacks, so they are unpoisoned.
  void abandon_block(unsigned int threads) {
#if defined(CUDA_ON_CPU_ASAN)
    for (unsigned int t = 0; t < threads; ++t) {
      ASAN_UNPOISON_MEMORY_REGION(fibers_[t].stack, kStackBytes);
    }
#else
    (void)threads;
#endif
  }

  std::vector<Fiber> fibers_;
  char* stacks_ = nullptr;
  ucontext_t scheduler_;
  unsigned int current_ = 0;
  const std::function<void()>* body_ = nullptr;
  unsigned char* shared_ = nullptr;
  const void* scheduler_stack_ = nullptr;
  size_t scheduler_stack_size_ = 0;
};

// Runs kernel(args...) on a grid of `blocks` blocks of `threads` threads.
template <typename... Params, typename... Args>
void launch(
    void (*kernel)(Params...), unsigned int blocks, unsigned int threads,
    size_t shared_bytes, const Args&... args) {
  // Every thread gets its own copy of the arguments, as on a GPU.
  const std::function<void()> body = [&] { kernel(args...); };
  BlockRunner::get().run_grid(blocks, threads, shared_bytes, body);
}

} // namespace cuda_on_cpu

inline void __syncthreads() {
  cuda_on_cpu::BlockRunner::get().barrier();
}
