// How many OpenMP threads duet uses by default: the CPUs this process may run on minus those that
// other processes keep busy. libgomp's team is only as fast as its slowest thread, and a thread
// that shares a core with another process runs at half speed at best (worse while its teammates
// spin at barriers): on a 2-core machine with one core busy, 2 threads measured 1.9x slower than
// 1 (docs/benchmarks.md, "Sharing the machine"). An explicit --threads N, or OMP_NUM_THREADS in
// the environment, always wins.
#pragma once

#include <cstdint>
#include <string>

namespace duet {

struct ThreadChoice {
  int threads = 1;        // what to pass to omp_set_num_threads
  int cpus = 1;           // CPUs in this process's affinity mask
  double busy_other = 0;  // CPUs' worth of work other processes are running (estimate)
  bool user_set = false;  // chosen by the user (--threads / OMP_NUM_THREADS), not measured
  std::string reason;     // one line for logs: "2 of 2 cpus (others running: 0)"
};

// From the kernel's instantaneous count of runnable threads (/proc/stat procs_running, minus
// this thread), the minimum of three samples 1 ms apart so a momentary blip does not halve the
// team. Measured once per process (later calls return the first answer), because oneDNN sizes a
// primitive's parallel partition and scratchpad when the primitive is created: a team that
// changed size afterwards would not take effect in oneDNN's kernels (and must never grow).
// requested > 0: that, unmeasured. Niced processes count as busy (the kernel does not say which
// runnable thread is niced).
ThreadChoice choose_threads(int requested = 0);

}  // namespace duet
