// How many OpenMP threads duet uses by default: the CPUs this process may run on minus those that
// other processes keep busy. libgomp's team is only as fast as its slowest thread, and a thread
// that shares a core with another process runs at half speed at best (worse while its teammates
// spin at barriers): on a 2-core machine with one core busy, 2 threads measured 1.9x slower than
// 1 (docs/benchmarks.md, "Sharing the machine"). An explicit --threads N, or OMP_NUM_THREADS in
// the environment, always wins.
//
// "Busy elsewhere" needs both of two readings of /proc/stat: runnable threads right now
// (procs_running, minus this process's running threads) and the CPU time other processes used
// during a window of at least 30 ms (all CPUs' user + system + irq + steal time, minus this
// process's own: niced work does not count, it yields to duet). The smaller of the two is taken,
// so a momentary blip or a niced background job does not halve the team.
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

// Opens a measurement window (e.g. around loading a model, so the window costs nothing).
class CpuLoadProbe {
 public:
  CpuLoadProbe();
  // requested > 0: that, unmeasured. Otherwise the process's choice: on the first call the
  // window is closed (waiting until it is min_window_ms long) and the choice fixed.
  ThreadChoice finish(int requested = 0, int min_window_ms = 30);

 private:
  int64_t wall_ns_ = 0, self_ns_ = 0;
  uint64_t busy_ticks_ = 0;
  bool ok_ = false;
};

// The process's choice (measured over a 30 ms window on first use when no probe finished yet).
ThreadChoice choose_threads(int requested = 0);

}  // namespace duet
