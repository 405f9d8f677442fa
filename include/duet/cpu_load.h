// How many OpenMP threads duet uses by default: the CPUs this process may run on minus those that
// other processes keep busy. libgomp's team is only as fast as its slowest thread, and a thread
// that shares a core with another process runs at half speed at best (worse while its teammates
// spin at barriers): on a 2-core machine with one core busy, 2 threads measured 1.9x slower than
// 1 (docs/benchmarks.md, "Sharing the machine"). An explicit --threads N, or OMP_NUM_THREADS in
// the environment, always wins.
//
// "Busy elsewhere" counts the threads of other processes that are runnable (state R) at nice <= 0
// (/proc/PID/task/TID/stat; walked only when /proc/stat's procs_running shows anyone else
// runnable, so an idle machine costs one read): niced work does not count, it yields to duet.
// The minimum of three samples (when a probe opens, when it finishes, 1 ms later) is taken, so a
// momentary blip does not halve the team.
//
// The choice is made once per process (later calls return the first answer): oneDNN sizes a
// primitive's parallel partition and scratchpad when the primitive is created, so a team that
// changed size afterwards would not take effect in oneDNN's kernels (and must never grow).
#pragma once

#include <cstdint>
#include <string>

namespace duet {

struct ThreadChoice {
  int threads = 1;        // what to pass to omp_set_num_threads
  int cpus = 1;           // CPUs in this process's affinity mask
  double busy_other = 0;  // CPUs' worth of work other processes are running (estimate)
  bool user_set = false;  // chosen by the user (--threads / OMP_NUM_THREADS), not measured
  std::string reason;     // one line for logs: "2 of 2 cpus (0.00 cpus busy elsewhere ...)"
};

// Takes the first sample (e.g. before loading a model; finish() after it).
class CpuLoadProbe {
 public:
  CpuLoadProbe();
  // requested > 0: that, unmeasured. Otherwise the process's choice: fixed by the first call.
  ThreadChoice finish(int requested = 0);

 private:
  int first_ = 0;
};

// The process's choice (a probe opened and finished at once on first use).
ThreadChoice choose_threads(int requested = 0);

}  // namespace duet
