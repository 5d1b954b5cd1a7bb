// tk_emu_warp.cpp -- the warp collectives (shuffles, votes, __syncwarp, mma.sync, ldmatrix) with
// the PTX ISA's semantics and lane layouts, and cp.async's deferred copies.
#include "tk_emu_internal.h"

namespace tk_emu {

// ---- warp collectives --------------------------------------------------------------------------

namespace {

using Complete = void (*)(Fiber* lanes, int kind);

// Arrive at a warp collective; the 32nd lane runs `complete` over the warp's lanes.
void warp_arrive(int kind, unsigned mask, Loc loc, Complete complete) {
  Fiber* f = cur();
  Block* b = f->block;
  WarpState& w = b->warps[f->warp];
  if (mask != 0xffffffffu)
    fail(TK_EMU_FAULT, "%s (%s) with mask 0x%08x: docs/cuda.md allows full-warp masks (0xffffffff) only",
         kind_name(kind), SiteText(loc).s, mask);
  if (w.size != 32)
    fail(TK_EMU_FAULT, "%s (%s) in warp %u, which has only %u threads (a block of %u threads is not a whole number of "
         "warps): a full-mask warp collective needs 32 lanes", kind_name(kind), SiteText(loc).s, f->warp, w.size, b->n);
  if (w.exited != 0)
    fail(TK_EMU_FAULT, "divergent warp: %s (%s) reached after %u lanes of warp %u exited; every lane must reach every "
         "warp collective", kind_name(kind), SiteText(loc).s, w.exited, f->warp);
  if (w.arrived == 0) {
    w.kind = kind;
    w.site = loc;
  } else if (w.kind != kind || !same_site(loc, w.site)) {
    fail(TK_EMU_FAULT, "divergent warp: lane %u reached %s (%s) while %u lanes of warp %u wait at %s (%s)", f->lane,
         kind_name(kind), SiteText(loc).s, w.arrived, f->warp, kind_name(w.kind), SiteText(w.site).s);
  }
  f->kind = kind;
  f->site = loc;
  if (++w.arrived == 32) {
    w.arrived = 0;
    Fiber* lanes = b->fibers + f->warp * 32;
    complete(lanes, kind);
    for (unsigned i = 0; i < 32; ++i)
      if (&lanes[i] != f) push(b, &lanes[i]);
    return;
  }
  f->state = WAIT_WARP;
  switch_away(f);
}

// shfl.sync with CUDA's c operands (PTX ISA "shfl.sync"): segments of `width` lanes; idx wraps the
// source lane within the segment, up/down keep the own value past the segment's edge, bfly keeps it
// past the segment's top (an earlier segment may be read).
void complete_shuffle(Fiber* lanes, int kind) {
  uint64_t out[32];
  for (unsigned l = 0; l < 32; ++l) {
    const int width = lanes[l].width;
    if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
      g_cur = &lanes[l];
      fail(TK_EMU_FAULT, "%s (%s) with width %d: width must be a power of two in 1..32", kind_name(kind),
           SiteText(lanes[l].site).s, width);
    }
    const int b = lanes[l].arg & 31;
    const int lane = static_cast<int>(l);
    const int seg_lo = lane & ~(width - 1), seg_hi = seg_lo + width - 1;
    int j = lane;
    bool ok = true;
    switch (kind) {
      case SHFL_IDX: j = seg_lo | (b & (width - 1)); break;
      case SHFL_UP: j = lane - b; ok = j >= seg_lo; break;
      case SHFL_DOWN: j = lane + b; ok = j <= seg_hi; break;
      case SHFL_XOR: j = lane ^ b; ok = j <= seg_hi; break;
    }
    out[l] = lanes[ok ? j : lane].value;
  }
  for (unsigned l = 0; l < 32; ++l) lanes[l].value = out[l];
}

void complete_vote(Fiber* lanes, int kind) {
  uint32_t ballot = 0;
  for (unsigned l = 0; l < 32; ++l) ballot |= static_cast<uint32_t>(lanes[l].value != 0) << l;
  const uint64_t r = kind == VOTE_BALLOT ? ballot : kind == VOTE_ANY ? ballot != 0 : ballot == 0xffffffffu;
  for (unsigned l = 0; l < 32; ++l) lanes[l].value = r;
}

void complete_nothing(Fiber*, int) {}

// mma.sync: gather A, B, C from the lanes' fragments (layouts in tk_cuda.cuh), D = C + A.B with the
// products exact and the sums rounded to fp32 in k order (fmaf), scatter D into the accumulators.
void complete_mma(Fiber* lanes, int kind) {
  const int K = kind == MMA_TF32 ? 8 : 16;
  float A[16][16], B[16][8], C[16][8];
  auto half = [kind](uint32_t reg, int hi) {
    const uint16_t h = static_cast<uint16_t>(hi ? reg >> 16 : reg);
    return kind == MMA_BF16 ? bf16_to_f32(h) : f16_to_f32(h);
  };
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, q = l % 4;
    const uint32_t* a = lanes[l].a;
    const uint32_t* b = lanes[l].b;
    const float* c = lanes[l].acc;
    if (kind == MMA_TF32) {
      // the tensor core reads a tf32 operand's top 19 bits (to_tf32 leaves the low 13 bits zero)
      auto tf = [](uint32_t r) { return bits_f32(r & 0xffffe000u); };
      A[g][q] = tf(a[0]);
      A[g + 8][q] = tf(a[1]);
      A[g][q + 4] = tf(a[2]);
      A[g + 8][q + 4] = tf(a[3]);
      B[q][g] = tf(b[0]);
      B[q + 4][g] = tf(b[1]);
    } else {
      for (int h = 0; h < 2; ++h) {
        A[g][2 * q + h] = half(a[0], h);
        A[g + 8][2 * q + h] = half(a[1], h);
        A[g][2 * q + 8 + h] = half(a[2], h);
        A[g + 8][2 * q + 8 + h] = half(a[3], h);
        B[2 * q + h][g] = half(b[0], h);
        B[2 * q + 8 + h][g] = half(b[1], h);
      }
    }
    C[g][2 * q] = c[0];
    C[g][2 * q + 1] = c[1];
    C[g + 8][2 * q] = c[2];
    C[g + 8][2 * q + 1] = c[3];
  }
  for (int m = 0; m < 16; ++m) {
    for (int n = 0; n < 8; ++n) {
      float d = C[m][n];
      for (int k = 0; k < K; ++k) d = __builtin_fmaf(A[m][k], B[k][n], d);
      C[m][n] = d;
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, q = l % 4;
    float* c = lanes[l].acc;
    c[0] = C[g][2 * q];
    c[1] = C[g][2 * q + 1];
    c[2] = C[g + 8][2 * q];
    c[3] = C[g + 8][2 * q + 1];
  }
}

// ldmatrix.m8n8.x{1,2,4}[.trans].b16: lanes 8i..8i+7 give matrix i's row addresses (16 bytes each,
// 16-byte aligned, shared memory); the other lanes' addresses are not read.
void complete_ldmatrix(Fiber* lanes, int) {
  const int count = lanes[0].arg;
  const bool trans = lanes[0].width != 0;
  uint16_t M[4][8][8];
  for (int i = 0; i < count; ++i) {
    for (int r = 0; r < 8; ++r) {
      Fiber* f = &lanes[8 * i + r];
      const Buffer* b = f->row_buf;
      const uintptr_t a = reinterpret_cast<uintptr_t>(f->row);
      if (b == nullptr || b->space != SHARED || (a & 15) != 0) g_cur = f;  // a fault names the lane
      if (b == nullptr) fail(TK_EMU_FAULT, "tk::ldmatrix_x%d (%s): null row pointer", count, SiteText(f->site).s);
      if (b->space != SHARED)
        fail(TK_EMU_FAULT, "tk::ldmatrix_x%d (%s): the row address is in global buffer '%s'; ldmatrix reads shared memory",
             count, SiteText(f->site).s, b->name);
      const uintptr_t off = a - reinterpret_cast<uintptr_t>(b->base);
      if ((a & 15) != 0)
        fail(TK_EMU_FAULT, "misaligned tk::ldmatrix_x%d (%s): row %d of matrix %d at byte offset %lld of '%s' is not "
             "16-byte aligned", count, SiteText(f->site).s, r, i, static_cast<long long>(off), b->name);
      if (off > b->bytes || b->bytes - off < 16) g_cur = f;
      if (off > b->bytes || b->bytes - off < 16)
        fail(TK_EMU_FAULT, "out-of-bounds tk::ldmatrix_x%d (%s): row %d of matrix %d at byte offset %lld of shared "
             "buffer '%s' (%zu B) needs 16 bytes", count, SiteText(f->site).s, r, i, static_cast<long long>(off),
             b->name, b->bytes);
      memcpy(M[i][r], f->row, 16);
    }
  }
  for (int l = 0; l < 32; ++l) {
    const int row = l / 4, col = 2 * (l % 4);
    for (int i = 0; i < count; ++i) {
      const uint16_t lo = trans ? M[i][col][row] : M[i][row][col];
      const uint16_t hi = trans ? M[i][col + 1][row] : M[i][row][col + 1];
      lanes[l].regs[i] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
    }
  }
}

}  // namespace

uint64_t warp_shuffle(int kind, unsigned mask, uint64_t value, int arg, int width, Loc loc) {
  Fiber* f = cur();
  f->value = value;
  f->arg = arg;
  f->width = width;
  warp_arrive(kind, mask, loc, &complete_shuffle);
  return f->value;
}

unsigned warp_vote(int kind, unsigned mask, bool pred, Loc loc) {
  Fiber* f = cur();
  f->value = pred;
  warp_arrive(kind, mask, loc, &complete_vote);
  return static_cast<unsigned>(f->value);
}

void warp_sync(unsigned mask, Loc loc) { warp_arrive(SYNC_WARP, mask, loc, &complete_nothing); }

void warp_mma(int kind, float* acc, const uint32_t* a, const uint32_t* b, Loc loc) {
  Fiber* f = cur();
  f->acc = acc;
  f->a = a;
  f->b = b;
  warp_arrive(kind, 0xffffffffu, loc, &complete_mma);
}

void warp_ldmatrix(int count, bool trans, uint32_t* r, const Buffer* b, const void* row, Loc loc) {
  Fiber* f = cur();
  f->regs = r;
  f->row_buf = b;
  f->row = static_cast<const char*>(row);
  f->arg = count;
  f->width = trans ? 1 : 0;
  // lanes of one warp at one call site always pass the same count and .trans (the site fixes both)
  warp_arrive(LDMATRIX, 0xffffffffu, loc, &complete_ldmatrix);
}

// ---- cp.async: copies are performed when a wait completes their group; the destination holds
// poison (0xff) from the issue until then, so reading it early shows NaN.

namespace {
void complete_copies(Fiber* f, unsigned below_group) {
  size_t keep = 0;
  for (size_t i = 0; i < f->copies.size(); ++i) {
    Copy& c = f->copies[i];
    if (c.group != OPEN_GROUP && c.group < below_group) {
      if (c.valid) memcpy(c.dst, c.src, 16);
      else memset(c.dst, 0, 16);
    } else {
      f->copies[keep++] = c;
    }
  }
  f->copies.resize(keep);
}
}  // namespace

void cp_async(const Buffer* db, void* dst, const Buffer* sb, const void* src, bool valid, Loc loc) {
  Fiber* f = cur();
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst);
  if (db == nullptr) fail(TK_EMU_FAULT, "tk::cp_async_16 (%s): null destination", SiteText(loc).s);
  if (db->space != SHARED)
    fail(TK_EMU_FAULT, "tk::cp_async_16 (%s): the destination is global buffer '%s'; cp.async writes shared memory",
         SiteText(loc).s, db->name);
  const uintptr_t doff = d - reinterpret_cast<uintptr_t>(db->base);
  if ((d & 15) != 0)
    fail(TK_EMU_FAULT, "misaligned tk::cp_async_16 (%s): destination byte offset %lld of '%s' is not 16-byte aligned",
         SiteText(loc).s, static_cast<long long>(doff), db->name);
  if (doff > db->bytes || db->bytes - doff < 16)
    fail(TK_EMU_FAULT, "out-of-bounds tk::cp_async_16 (%s): destination byte offset %lld of shared buffer '%s' (%zu B) "
         "needs 16 bytes", SiteText(loc).s, static_cast<long long>(doff), db->name, db->bytes);
  if (valid) {
    const uintptr_t s = reinterpret_cast<uintptr_t>(src);
    if (sb == nullptr) fail(TK_EMU_FAULT, "tk::cp_async_16 (%s): null source", SiteText(loc).s);
    if (sb->space != GLOBAL)
      fail(TK_EMU_FAULT, "tk::cp_async_16 (%s): the source is shared buffer '%s'; cp.async reads global memory",
           SiteText(loc).s, sb->name);
    const uintptr_t soff = s - reinterpret_cast<uintptr_t>(sb->base);
    if ((s & 15) != 0)
      fail(TK_EMU_FAULT, "misaligned tk::cp_async_16 (%s): source byte offset %lld of '%s' is not 16-byte aligned",
           SiteText(loc).s, static_cast<long long>(soff), sb->name);
    if (soff > sb->bytes || sb->bytes - soff < 16)
      fail(TK_EMU_FAULT, "out-of-bounds tk::cp_async_16 (%s): source byte offset %lld of global buffer '%s' (%zu B) "
           "needs 16 bytes", SiteText(loc).s, static_cast<long long>(soff), sb->name, sb->bytes);
  }
  memset(dst, 0xff, 16);
  f->copies.push_back(Copy{static_cast<char*>(dst), static_cast<const char*>(src), valid, OPEN_GROUP});
}

void cp_async_commit() {
  Fiber* f = cur();
  for (Copy& c : f->copies)
    if (c.group == OPEN_GROUP) c.group = f->groups;
  ++f->groups;  // an empty group is a group too (PTX: cp.async.commit_group)
}

void cp_async_wait(int n, Loc) {
  Fiber* f = cur();
  const unsigned groups = f->groups;
  complete_copies(f, groups > static_cast<unsigned>(n) ? groups - static_cast<unsigned>(n) : 0);
}

}  // namespace tk_emu
