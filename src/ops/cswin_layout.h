// Window layout of CSWin stripe attention (ops.h CswinAttentionArgs), shared by the reference,
// cpu and cuda implementations (host unit tests exercise it: test_ops.cpp).
// Branch 0: heads [0, heads/2) attend within horizontal stripes — rows [s*sw, min((s+1)*sw, gh)),
// every column. Branch 1: heads [heads/2, heads) within vertical stripes — columns
// [s*sw, min((s+1)*sw, gw)), every row. The last stripe is shorter when sw does not divide the
// grid; the gathered layout pads every window to the same `len` slots (padding slots: token -1).
#pragma once

#include <cstdint>

#ifndef DUET_HD
#ifdef __CUDACC__
#define DUET_HD __host__ __device__
#else
#define DUET_HD
#endif
#endif

namespace duet::ops {

struct CswinBranch {
  bool vertical = false;
  int64_t head0 = 0, nheads = 0;  // first head and head count of the branch
  int64_t c0 = 0, width = 0;      // first column and columns (nheads * d)
  int64_t windows = 0;            // stripes per image
  int64_t wlen = 0;               // stripe width in use: min(stripe, extent across the stripes)
  int64_t len = 0;                // slots per window: wlen * (extent along the stripes)
};

DUET_HD inline CswinBranch cswin_branch(int which, int64_t heads, int64_t d, int64_t gh, int64_t gw,
                                        int64_t stripe) {
  CswinBranch br;
  br.vertical = which == 1;
  br.head0 = br.vertical ? heads / 2 : 0;
  br.nheads = br.vertical ? heads - heads / 2 : heads / 2;
  br.c0 = br.head0 * d;
  br.width = br.nheads * d;
  const int64_t across = br.vertical ? gw : gh, along = br.vertical ? gh : gw;
  br.windows = (across + stripe - 1) / stripe;
  br.wlen = stripe < across ? stripe : across;
  br.len = br.wlen * along;
  return br;
}

// Token index (row * gw + col) of slot t of window s, or -1 for a padding slot. Slots run
// row-major over the window's sub-grid.
DUET_HD inline int64_t cswin_token(const CswinBranch& br, int64_t gh, int64_t gw, int64_t stripe,
                                   int64_t s, int64_t t) {
  int64_t row, col;
  if (br.vertical) {
    row = t / br.wlen;
    col = s * stripe + t % br.wlen;
  } else {
    row = s * stripe + t / gw;
    col = t % gw;
  }
  return (row < gh && col < gw) ? row * gw + col : -1;
}

// True when (row + di, col + dj) lies in the grid and in the same window as (row, col): the
// LePE convolution sees zeros outside the window.
DUET_HD inline bool cswin_same_window(const CswinBranch& br, int64_t gh, int64_t gw, int64_t stripe,
                                      int64_t row, int64_t col, int64_t di, int64_t dj) {
  const int64_t r2 = row + di, c2 = col + dj;
  if (r2 < 0 || r2 >= gh || c2 < 0 || c2 >= gw) return false;
  return br.vertical ? c2 / stripe == col / stripe : r2 / stripe == row / stripe;
}

// Scratch (floats) of the gathered layout: per branch q, k, v, o [B * windows * len, width] and
// the key mask (bytes, rounded up to floats); the larger branch; then the LePE taps [k*k, D].
DUET_HD inline int64_t cswin_scratch_floats(int64_t batch, int64_t heads, int64_t d, int64_t gh,
                                            int64_t gw, int64_t stripe, int64_t kernel) {
  int64_t most = 0;
  for (int which = 0; which < 2; ++which) {
    const CswinBranch br = cswin_branch(which, heads, d, gh, gw, stripe);
    const int64_t slots = batch * br.windows * br.len;
    const int64_t f = 4 * slots * br.width + (slots + 3) / 4;
    most = f > most ? f : most;
  }
  return most + kernel * kernel * heads * d;
}

}  // namespace duet::ops
