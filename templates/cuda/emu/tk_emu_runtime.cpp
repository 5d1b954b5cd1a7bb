// tk_emu_runtime.cpp -- the emulator's scheduler: one fiber per CUDA thread, on one OS thread.
//
// Compiled once into an object (cached by content hash) and linked into every kernel program's
// shared library. The helper process (tk_emu_server.cpp) forks a child per launch and calls
// tk_emu_run() there, so a crash, a fault or a time-out ends the child, never Python.
//
// A fiber runs until a barrier, a warp collective, a grid sync or its end, then switches directly
// to the next ready fiber of its block (or back to the scheduler when none is ready). Collectives
// complete when their last participant arrives: that fiber computes every lane's result and goes
// on. Faults write a message into the shared request and _exit the child.
#include <signal.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <cstdarg>
#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#if !defined(__x86_64__) || defined(TK_EMU_UCONTEXT)
#include <ucontext.h>
#define TK_EMU_ASM 0
#else
#define TK_EMU_ASM 1
#endif

#include "tk_emu.h"
#include "tk_emu_protocol.h"

#define TK_EXPORT extern "C" __attribute__((visibility("default")))

// ---- context switch ----------------------------------------------------------------------------
// x86-64 System V: the callee-saved registers rbx rbp r12-r15, MXCSR and the x87 control word are
// all a switch must keep (measured 40-70 ns a switch here; ucontext's swapcontext also saves the
// signal mask with a system call, about 4x slower, and stays as the fallback for other CPUs).
#if TK_EMU_ASM
extern "C" void tk_emu_switch(void** save_sp, void* next_sp);
extern "C" void tk_emu_trampoline();
asm(R"(
  .text
  .globl tk_emu_switch
  .hidden tk_emu_switch
  .type tk_emu_switch,@function
  .p2align 4
tk_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size tk_emu_switch,.-tk_emu_switch

  .globl tk_emu_trampoline
  .hidden tk_emu_trampoline
  .type tk_emu_trampoline,@function
  .p2align 4
tk_emu_trampoline:
  movq %r12, %rdi
  call tk_emu_fiber_main
  ud2
  .size tk_emu_trampoline,.-tk_emu_trampoline
)");
#endif

namespace tk_emu {

ThreadCtx* g_cur = nullptr;
dim3 g_block_dim, g_grid_dim;

namespace {

struct Ctx {
#if TK_EMU_ASM
  void* sp;
#else
  ucontext_t uc;
#endif
};

enum State : uint8_t { READY, RUNNING, WAIT_BLOCK, WAIT_WARP, WAIT_GRID, DONE };

constexpr unsigned OPEN_GROUP = ~0u;
struct Copy {
  char* dst;
  const char* src;
  bool valid;
  unsigned group;
};

struct Block;

struct Fiber : ThreadCtx {
  Ctx ctx;
  Block* block;
  unsigned linear, warp, lane;
  State state;
  int kind;  // the collective it waits at
  Loc site;
  // a collective's operands and result
  uint64_t value;
  int arg, width;
  const uint32_t* a;
  const uint32_t* b;
  float* acc;
  uint32_t* regs;
  const Buffer* row_buf;
  const char* row;
  // cp.async copies not yet performed, and the groups committed so far
  std::vector<Copy> copies;
  unsigned groups;
  char* stack_lo;
  size_t stack_bytes;
};

struct WarpState {
  unsigned arrived, size, exited;
  int kind;
  Loc site;
};

struct Block {
  uint3 idx;
  unsigned n, done;
  Fiber* fibers;
  unsigned bar_arrived;
  Loc bar_site;
  Fiber** queue;  // ring of ready fibers
  unsigned qhead, qlen;
  WarpState* warps;
  unsigned nwarps;
  std::vector<Buffer> statics;  // one per registered TK_SHARED site
  std::vector<bool> reached;
  size_t static_used;
  Buffer dyn;
};

std::vector<SharedSite (*)()>& shared_sites() {
  static std::vector<SharedSite (*)()> v;
  return v;
}
std::vector<const EntryDesc*>& entries() {
  static std::vector<const EntryDesc*> v;
  return v;
}

struct Launch {
  tk_emu_request* req = nullptr;
  const EntryDesc* entry = nullptr;
  std::vector<Arg> args;
  std::vector<Buffer> globals;
  bool cooperative = false;
  unsigned nblocks = 0, nthreads = 0;
  std::vector<Block> blocks;  // resident: every block (cooperative) or one slot
  uint64_t live = 0;          // resident threads not done
  uint64_t grid_arrived = 0, resident_threads = 0;
  Loc grid_site;
  const Fiber* first_exited = nullptr;
  Ctx sched;
  uint64_t switches = 0;
  size_t stack_bytes = 0;
  bool guard = true;          // every fiber stack has a guard page below it
  bool guard_regions = true;  // ... installed with MADV_GUARD_INSTALL (else mprotect)
  std::vector<SharedSite> sites;
};
Launch L;

constexpr uint64_t CANARY = 0x5ca1ab1e0ddba11ull;
constexpr int MADV_GUARD_INSTALL_ = 102;  // <linux/mman.h> of Linux 6.13
constexpr size_t PAGE = 4096;

// ---- messages ----------------------------------------------------------------------------------

const char* base_name(const char* path) {
  const char* s = strrchr(path, '/');
  return s ? s + 1 : path;
}

bool same_site(const Loc& a, const Loc& b) {
  return a.line() == b.line() && a.column() == b.column() && strcmp(a.file_name(), b.file_name()) == 0;
}

const char* kind_name(int kind) {
  switch (kind) {
    case SYNC_BLOCK: return "__syncthreads";
    case SYNC_WARP: return "__syncwarp";
    case SHFL_IDX: return "__shfl_sync";
    case SHFL_UP: return "__shfl_up_sync";
    case SHFL_DOWN: return "__shfl_down_sync";
    case SHFL_XOR: return "__shfl_xor_sync";
    case VOTE_BALLOT: return "__ballot_sync";
    case VOTE_ANY: return "__any_sync";
    case VOTE_ALL: return "__all_sync";
    case MMA_BF16: return "tk::mma_m16n8k16_bf16";
    case MMA_F16: return "tk::mma_m16n8k16_f16";
    case MMA_TF32: return "tk::mma_m16n8k8_tf32";
    case LDMATRIX: return "tk::ldmatrix";
    case GRID_SYNC: return "tk::grid_sync";
    default: return "?";
  }
}

// "k.cu:42"
struct SiteText {
  char s[320];
  explicit SiteText(const Loc& loc) { snprintf(s, sizeof s, "%s:%u", base_name(loc.file_name()), loc.line()); }
};

struct Where {
  char s[200];
  explicit Where(const Fiber* f) {
    if (f == nullptr) {
      snprintf(s, sizeof s, "the scheduler");
      return;
    }
    snprintf(s, sizeof s, "block (%u,%u,%u) thread (%u,%u,%u)", f->block_idx.x, f->block_idx.y, f->block_idx.z,
             f->thread_idx.x, f->thread_idx.y, f->thread_idx.z);
  }
};

Fiber* cur() { return static_cast<Fiber*>(g_cur); }

[[noreturn]] void finish(int status) {
  if (L.req) {
    L.req->status = status;
    L.req->switches = L.switches;
  }
  fflush(nullptr);  // a kernel's printf
  _exit(0);
}

// "<entry>: block (..) thread (..): <text>" into the request, then end the child
[[noreturn]] __attribute__((format(printf, 2, 3))) void fail(int status, const char* fmt, ...) {
  char text[6144];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  if (L.req) {
    snprintf(L.req->message, sizeof L.req->message, "%s: %s: %s", L.entry ? L.entry->name : L.req->entry,
             Where(cur()).s, text);
  }
  finish(status);
}

// ---- fibers ------------------------------------------------------------------------------------

void push(Block* b, Fiber* f) {
  f->state = READY;
  b->queue[(b->qhead + b->qlen) % b->n] = f;
  ++b->qlen;
}
Fiber* pop(Block* b) {
  if (b->qlen == 0) return nullptr;
  Fiber* f = b->queue[b->qhead];
  b->qhead = (b->qhead + 1) % b->n;
  --b->qlen;
  return f;
}

void ctx_switch(Ctx* from, Ctx* to) {
  ++L.switches;
#if TK_EMU_ASM
  tk_emu_switch(&from->sp, to->sp);
#else
  swapcontext(&from->uc, &to->uc);
#endif
}

void check_canary(const Fiber* f) {
  if (L.guard) return;  // the guard page reports an overflow when it happens
  uint64_t c;
  memcpy(&c, f->stack_lo, 8);
  if (c != CANARY)
    fail(TK_EMU_FAULT, "stack overflow: the thread used more than its %zu KiB fiber stack (found by the canary; "
         "memory next to it may be corrupt): raise EmulatorRunner(stack_kib=...)", f->stack_bytes / 1024);
}

// The current fiber waits: run the next ready fiber of its block, or return to the scheduler.
void switch_away(Fiber* f) {
  check_canary(f);
  Fiber* next = pop(f->block);
  if (next != nullptr) {
    next->state = RUNNING;
    g_cur = next;
    ctx_switch(&f->ctx, &next->ctx);
  } else {
    g_cur = nullptr;
    ctx_switch(&f->ctx, &L.sched);
  }
}

[[noreturn]] void thread_exit(Fiber* f) {
  // cp.async copies still pending are dropped: only this thread's wait could have made them
  // visible (to others after a barrier), so no correct kernel reads them; a missing wait stays NaN
  f->copies.clear();
  Block* b = f->block;
  WarpState& w = b->warps[f->warp];
  if (b->bar_arrived != 0)
    fail(TK_EMU_FAULT, "divergent __syncthreads: the thread exited while %u threads of its block wait at __syncthreads "
         "(%s); every thread of a block must reach every __syncthreads", b->bar_arrived, SiteText(b->bar_site).s);
  if (w.arrived != 0)
    fail(TK_EMU_FAULT, "divergent warp: lane %u exited while %u lanes of warp %u wait at %s (%s); every lane must "
         "reach every warp collective", f->lane, w.arrived, f->warp, kind_name(w.kind), SiteText(w.site).s);
  if (L.grid_arrived != 0)
    fail(TK_EMU_FAULT, "divergent tk::grid_sync: the thread exited while %llu threads of the grid wait at "
         "tk::grid_sync (%s); every thread of the grid must reach every grid sync",
         static_cast<unsigned long long>(L.grid_arrived), SiteText(L.grid_site).s);
  f->state = DONE;
  ++b->done;
  ++w.exited;
  --L.live;
  if (L.first_exited == nullptr) L.first_exited = f;
  switch_away(f);
  __builtin_unreachable();
}

}  // namespace
}  // namespace tk_emu

extern "C" __attribute__((visibility("hidden"), noreturn)) void tk_emu_fiber_main(tk_emu::Fiber* f) {
  tk_emu::L.entry->invoke(tk_emu::L.args.data());
  tk_emu::thread_exit(f);
}

namespace tk_emu {
namespace {

#if !TK_EMU_ASM
void uc_entry(unsigned lo, unsigned hi) {
  tk_emu_fiber_main(reinterpret_cast<Fiber*>((static_cast<uintptr_t>(hi) << 32) | lo));
}
#endif

void init_context(Fiber* f) {
  if (!L.guard) memcpy(f->stack_lo, &CANARY, 8);  // a stack's lowest word: touched only without guards
#if TK_EMU_ASM
  // The frame tk_emu_switch pops: [csr][r15][r14][r13][r12 = fiber][rbx][rbp][return = trampoline],
  // with the top 16-byte aligned so the trampoline's call enters tk_emu_fiber_main ABI-aligned.
  uint64_t* top = reinterpret_cast<uint64_t*>((reinterpret_cast<uintptr_t>(f->stack_lo) + f->stack_bytes) & ~uintptr_t(15));
  uint32_t mxcsr;
  uint16_t fpcw;
  asm volatile("stmxcsr %0" : "=m"(mxcsr));
  asm volatile("fnstcw %0" : "=m"(fpcw));
  top[-1] = reinterpret_cast<uint64_t>(&tk_emu_trampoline);
  top[-2] = 0;
  top[-3] = 0;
  top[-4] = reinterpret_cast<uint64_t>(f);
  top[-5] = top[-6] = top[-7] = 0;
  top[-8] = static_cast<uint64_t>(mxcsr) | (static_cast<uint64_t>(fpcw) << 32);
  f->ctx.sp = &top[-8];
#else
  getcontext(&f->ctx.uc);
  f->ctx.uc.uc_stack.ss_sp = f->stack_lo + 64;
  f->ctx.uc.uc_stack.ss_size = f->stack_bytes - 64;
  f->ctx.uc.uc_link = nullptr;
  const uintptr_t p = reinterpret_cast<uintptr_t>(f);
  makecontext(&f->ctx.uc, reinterpret_cast<void (*)()>(&uc_entry), 2, static_cast<unsigned>(p),
              static_cast<unsigned>(p >> 32));
#endif
}

// ---- blocks ------------------------------------------------------------------------------------

size_t round16(size_t n) { return (n + 15) & ~size_t(15); }

long max_map_count() {
  FILE* f = fopen("/proc/sys/vm/max_map_count", "r");
  long v = 65530;  // the Linux default
  if (f != nullptr) {
    if (fscanf(f, "%ld", &v) != 1) v = 65530;
    fclose(f);
  }
  return v;
}

void alloc_block(Block* b, unsigned n, const dim3& bd) {
  b->n = n;
  b->fibers = new Fiber[n];
  b->queue = new Fiber*[n];
  b->nwarps = (n + 31) / 32;
  b->warps = new WarpState[b->nwarps];
  const size_t per = L.stack_bytes + (L.guard ? PAGE : 0);
  char* mem = static_cast<char*>(
      mmap(nullptr, per * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0));
  if (mem == MAP_FAILED)
    fail(TK_EMU_FAULT, "cannot map %u fiber stacks of %zu KiB", n, L.stack_bytes / 1024);
  for (unsigned i = 0; i < n; ++i) {
    Fiber* f = &b->fibers[i];
    char* lo = mem + i * per;
    if (L.guard) {
      // Linux >= 6.13: a guard region costs no memory map (~1 us a fiber, measured here); older
      // kernels: mprotect, which splits the mapping (~3 us a fiber, and 2 maps of max_map_count)
      if (!L.guard_regions || madvise(lo, PAGE, MADV_GUARD_INSTALL_) != 0) {
        L.guard_regions = false;
        if (mprotect(lo, PAGE, PROT_NONE) != 0) fail(TK_EMU_FAULT, "cannot protect a fiber stack's guard page");
      }
      lo += PAGE;
    }
    f->stack_lo = lo;
    f->stack_bytes = L.stack_bytes;
    f->block = b;
    f->linear = i;
    f->warp = i / 32;
    f->lane = i % 32;
    f->thread_idx = {i % bd.x, (i / bd.x) % bd.y, i / (bd.x * bd.y)};
    f->groups = 0;
  }
  b->statics.assign(L.sites.size(), Buffer{nullptr, 0, nullptr, SHARED});
  b->reached.assign(L.sites.size(), false);
  const size_t dyn = L.req->dynamic_shared;
  b->dyn = Buffer{static_cast<char*>(aligned_alloc(16, round16(dyn) + 16)), dyn, "dynamic shared", SHARED};
}

// Start block `idx` in slot b: every thread ready at the top of the kernel, shared memory poisoned.
void start_block(Block* b, unsigned idx) {
  const dim3& g = g_grid_dim;
  b->idx = {idx % g.x, (idx / g.x) % g.y, idx / (g.x * g.y)};
  b->done = 0;
  b->bar_arrived = 0;
  b->qhead = b->qlen = 0;
  for (unsigned w = 0; w < b->nwarps; ++w) {
    b->warps[w] = WarpState{0, w + 1 < b->nwarps || b->n % 32 == 0 ? 32u : b->n % 32, 0, 0, Loc()};
  }
  for (unsigned i = 0; i < b->n; ++i) {
    Fiber* f = &b->fibers[i];
    f->block_idx = b->idx;
    f->copies.clear();
    f->groups = 0;
    init_context(f);
    push(b, f);
  }
  std::fill(b->reached.begin(), b->reached.end(), false);
  b->static_used = 0;
  memset(b->dyn.base, 0xff, round16(b->dyn.bytes));  // NaN in fp32, bf16 and fp16
  L.live += b->n;
}

void run_block(Block* b) {
  while (b->qlen != 0) {
    Fiber* f = pop(b);
    f->state = RUNNING;
    g_cur = f;
    ctx_switch(&L.sched, &f->ctx);
    g_cur = nullptr;
  }
}

const char* state_text(const Fiber* f, char* buf, size_t cap) {
  switch (f->state) {
    case READY:
    case RUNNING: snprintf(buf, cap, "can run"); break;
    case DONE: snprintf(buf, cap, "exited"); break;
    default: snprintf(buf, cap, "wait at %s (%s)", kind_name(f->kind), SiteText(f->site).s); break;
  }
  return buf;
}

// No fiber can run but some have not finished: say where each group of threads waits.
[[noreturn]] void deadlock() {
  char text[6000];
  size_t len = 0;
  int shown = 0;
  for (Block& b : L.blocks) {
    if (b.done == b.n) continue;
    if (shown++ == 4) {
      len += snprintf(text + len, sizeof text - len, " ...");
      break;
    }
    len += snprintf(text + len, sizeof text - len, "%s block (%u,%u,%u):", shown > 1 ? ";" : "", b.idx.x, b.idx.y, b.idx.z);
    unsigned i = 0;
    int groups = 0;
    while (i < b.n && len < sizeof text - 400) {
      char s0[400], s1[400];
      state_text(&b.fibers[i], s0, sizeof s0);
      unsigned j = i + 1;
      while (j < b.n && strcmp(state_text(&b.fibers[j], s1, sizeof s1), s0) == 0) ++j;
      if (b.fibers[i].state != DONE) {
        len += snprintf(text + len, sizeof text - len, "%s threads %u-%u %s", groups++ ? "," : "", i, j - 1, s0);
      }
      i = j;
    }
  }
  g_cur = nullptr;
  fail(TK_EMU_FAULT, "deadlock: no thread can go on (threads of a warp wait at different collectives, or a block's "
       "threads at a barrier and a warp collective):%s", text);
}

}  // namespace

// ---- barriers and grid sync ----------------------------------------------------------------------

void sync_block(Loc loc) {
  Fiber* f = cur();
  Block* b = f->block;
  if (b->done != 0) {
    const Fiber* gone = nullptr;
    for (unsigned i = 0; i < b->n && gone == nullptr; ++i)
      if (b->fibers[i].state == DONE) gone = &b->fibers[i];
    fail(TK_EMU_FAULT, "divergent __syncthreads (%s): thread (%u,%u,%u) of the block already exited; every thread of a "
         "block must reach every __syncthreads", SiteText(loc).s, gone->thread_idx.x, gone->thread_idx.y,
         gone->thread_idx.z);
  }
  if (b->bar_arrived == 0) {
    b->bar_site = loc;
  } else if (!same_site(loc, b->bar_site)) {
    fail(TK_EMU_FAULT, "divergent __syncthreads: this thread reached the one at %s while %u threads of the block wait at "
         "the one at %s", SiteText(loc).s, b->bar_arrived, SiteText(b->bar_site).s);
  }
  if (++b->bar_arrived == b->n) {
    b->bar_arrived = 0;
    for (unsigned i = 0; i < b->n; ++i)
      if (b->fibers[i].state == WAIT_BLOCK) push(b, &b->fibers[i]);
    return;
  }
  f->state = WAIT_BLOCK;
  f->kind = SYNC_BLOCK;
  f->site = loc;
  switch_away(f);
}

void grid_sync(Loc loc) {
  Fiber* f = cur();
  if (!L.cooperative)
    fail(TK_EMU_FAULT, "tk::grid_sync (%s) in a launch that is not cooperative: declare the entry with "
         "KernelEntry(..., cooperative=True)", SiteText(loc).s);
  if (L.first_exited != nullptr)
    fail(TK_EMU_FAULT, "divergent tk::grid_sync (%s): %s already exited; every thread of the grid must reach every "
         "grid sync", SiteText(loc).s, Where(L.first_exited).s);
  if (L.grid_arrived == 0) {
    L.grid_site = loc;
  } else if (!same_site(loc, L.grid_site)) {
    fail(TK_EMU_FAULT, "divergent tk::grid_sync: this thread reached the one at %s while %llu threads wait at the one "
         "at %s", SiteText(loc).s, static_cast<unsigned long long>(L.grid_arrived), SiteText(L.grid_site).s);
  }
  if (++L.grid_arrived == L.resident_threads) {
    L.grid_arrived = 0;
    for (Block& b : L.blocks)
      for (unsigned i = 0; i < b.n; ++i)
        if (b.fibers[i].state == WAIT_GRID) push(&b, &b.fibers[i]);
    return;
  }
  f->state = WAIT_GRID;
  f->kind = GRID_SYNC;
  f->site = loc;
  switch_away(f);
}

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

// ---- shared memory -----------------------------------------------------------------------------

int register_shared(SharedSite (*site)()) {
  shared_sites().push_back(site);
  return static_cast<int>(shared_sites().size() - 1);
}

int register_entry(const EntryDesc* entry) {
  entries().push_back(entry);
  return static_cast<int>(entries().size() - 1);
}

const Buffer* shared_static_buffer(int index) {
  Block* b = cur()->block;
  Buffer& s = b->statics[index];
  if (!b->reached[index]) {
    const SharedSite& site = L.sites[index];
    if (s.base == nullptr)
      s = Buffer{static_cast<char*>(aligned_alloc(16, round16(site.bytes) + 16)), site.bytes, site.name, SHARED};
    memset(s.base, 0xff, round16(site.bytes));
    b->reached[index] = true;
    b->static_used += round16(site.bytes);
    if (b->static_used > L.req->static_shared_checked) {
      L.req->static_shared_used = b->static_used;
      fail(TK_EMU_STATIC_GREW, "TK_SHARED '%s' brings the block's static shared memory to %zu B, more than the %llu B "
           "known before the launch (declared in %s)", site.name, b->static_used,
           static_cast<unsigned long long>(L.req->static_shared_checked), site.function);
    }
  }
  return &s;
}

const Buffer* dynamic_shared_buffer() { return &cur()->block->dyn; }

// ---- faults ------------------------------------------------------------------------------------

void fault_access(const Buffer* b, const void* addr, size_t size, size_t align, const char* type, bool read_only,
                  const char* what) {
  if (b == nullptr) fail(TK_EMU_FAULT, "%s through a null tk::ptr<%s>", what, type);
  const long long off = static_cast<long long>(reinterpret_cast<uintptr_t>(addr) - reinterpret_cast<uintptr_t>(b->base));
  const char* space = b->space == SHARED ? "shared" : "global";
  if ((reinterpret_cast<uintptr_t>(addr) & (align - 1)) != 0)
    fail(TK_EMU_FAULT, "misaligned %s of %s buffer '%s' as %s%s: byte offset %lld is not a multiple of %zu", what, space,
         b->name, read_only ? "const " : "", type, off, align);
  const long long elem = off >= 0 ? off / static_cast<long long>(size) : -((-off + static_cast<long long>(size) - 1) / static_cast<long long>(size));
  fail(TK_EMU_FAULT, "out-of-bounds %s of %s buffer '%s' (%s%s): element %lld (byte offset %lld), extent %zu elements "
       "(%zu B)", what, space, b->name, read_only ? "const " : "", type, elem, off, b->bytes / size, b->bytes);
}

void fault_message(const char* message) { fail(TK_EMU_FAULT, "%s", message); }

namespace {

// ---- signals: a crash or the time-out ends the child with a message -----------------------------

const char* signal_name(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    case SIGTRAP: return "SIGTRAP";
    default: return "a signal";
  }
}

void on_crash(int sig, siginfo_t* info, void*) {
  const Fiber* f = cur();
  const char* addr = static_cast<const char*>(info->si_addr);
  L.req->signal = sig;
  if (sig == SIGSEGV && L.guard) {
    for (const Block& b : L.blocks) {
      for (unsigned i = 0; i < b.n; ++i) {
        const char* lo = b.fibers[i].stack_lo;
        if (addr >= lo - PAGE && addr < lo) {
          g_cur = const_cast<Fiber*>(&b.fibers[i]);
          fail(TK_EMU_CRASH, "stack overflow (SIGSEGV in the guard page below the thread's %zu KiB fiber stack): "
               "raise EmulatorRunner(stack_kib=...) or use fewer local arrays", L.stack_bytes / 1024);
        }
      }
    }
  }
  const char* hint = sig == SIGSEGV || sig == SIGBUS ? ": a raw pointer outside every tk::ptr buffer?"
                     : sig == SIGFPE                ? ": an integer division by zero?"
                     : sig == SIGABRT               ? ": assert() failed or abort() was called"
                                                    : "";
  if (f == nullptr) fail(TK_EMU_CRASH, "%s at address %p in the emulator's scheduler", signal_name(sig), info->si_addr);
  fail(TK_EMU_CRASH, "%s (address %p)%s", signal_name(sig), info->si_addr, hint);
}

void on_alarm(int) {
  fail(TK_EMU_TIMEOUT, "time-out: the kernel ran longer than %.3g s and this thread was running (an endless loop or "
       "a spin-wait? fibers are never preempted)", L.req->timeout_s);
}

void install_signals() {
  static char altstack[1 << 16];
  stack_t ss{};
  ss.ss_sp = altstack;
  ss.ss_size = sizeof altstack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa{};
  sa.sa_sigaction = &on_crash;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTRAP}) sigaction(sig, &sa, nullptr);
  struct sigaction al{};
  al.sa_handler = &on_alarm;
  al.sa_flags = SA_ONSTACK;
  sigemptyset(&al.sa_mask);
  sigaction(SIGALRM, &al, nullptr);
  if (L.req->timeout_s > 0) {
    itimerval t{};
    const double s = L.req->timeout_s;
    t.it_value.tv_sec = static_cast<time_t>(s);
    t.it_value.tv_usec = static_cast<suseconds_t>((s - static_cast<double>(t.it_value.tv_sec)) * 1e6);
    if (t.it_value.tv_sec == 0 && t.it_value.tv_usec == 0) t.it_value.tv_usec = 1;
    setitimer(ITIMER_REAL, &t, nullptr);
  }
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// A fixed scrambled order of a non-cooperative launch's blocks (not blockIdx order: a kernel whose
// blocks depend on running in order fails here too, as it may on a GPU).
std::vector<unsigned> block_order(unsigned n) {
  std::vector<unsigned> order(n);
  for (unsigned i = 0; i < n; ++i) order[i] = i;
  uint64_t s = 0x9e3779b97f4a7c15ull ^ n;
  for (unsigned i = n; i > 1; --i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    std::swap(order[i - 1], order[(s >> 33) % i]);
  }
  return order;
}

void run() {
  tk_emu_request* req = L.req;
  const dim3 bd{req->block[0], req->block[1], req->block[2]};
  g_block_dim = bd;
  g_grid_dim = dim3{req->grid[0], req->grid[1], req->grid[2]};
  L.nthreads = bd.x * bd.y * bd.z;
  L.nblocks = g_grid_dim.x * g_grid_dim.y * g_grid_dim.z;
  L.cooperative = req->cooperative != 0;
  L.stack_bytes = req->stack_bytes;
  const unsigned slots = L.cooperative ? L.nblocks : 1;
  const uint64_t fibers = static_cast<uint64_t>(slots) * L.nthreads;
  // without guard regions each guard page splits a mapping: two memory maps a fiber, which must
  // stay under the kernel's limit (with room); past it, stacks get canaries instead
  L.guard = true;
  {
    char* probe = static_cast<char*>(mmap(nullptr, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    L.guard_regions = probe != MAP_FAILED && madvise(probe, PAGE, MADV_GUARD_INSTALL_) == 0;
    if (probe != MAP_FAILED) munmap(probe, PAGE);
  }
  if (!L.guard_regions) L.guard = static_cast<long>(2 * fibers + 4096) < max_map_count();
  req->guard_pages = L.guard;
  req->fibers = fibers;
  L.blocks.resize(slots);
  for (Block& b : L.blocks) alloc_block(&b, L.nthreads, bd);
  L.resident_threads = fibers;
  const uint64_t t0 = now_ns();
  if (L.cooperative) {
    for (unsigned i = 0; i < slots; ++i) start_block(&L.blocks[i], i);
    for (;;) {
      bool ran = false;
      for (Block& b : L.blocks) {
        if (b.qlen != 0) {
          run_block(&b);
          ran = true;
        }
      }
      if (L.live == 0) break;
      if (!ran) deadlock();
    }
  } else {
    for (unsigned idx : block_order(L.nblocks)) {
      Block* b = &L.blocks[0];
      start_block(b, idx);
      run_block(b);
      if (b->done != b->n) deadlock();
      L.first_exited = nullptr;
    }
  }
  req->run_ns = now_ns() - t0;
}

}  // namespace
}  // namespace tk_emu

// ---- exported: describe the program, run one launch ---------------------------------------------

namespace {

// The function a TK_SHARED site is declared in: "static tk_emu::SharedSite NAME(args)::..." -> NAME
bool declared_in(const char* function, const char* entry) {
  const char* open = strchr(function, '(');
  if (open == nullptr) return false;
  const char* start = open;
  while (start > function && start[-1] != ' ') --start;
  const size_t n = strlen(entry);
  return static_cast<size_t>(open - start) == n && strncmp(start, entry, n) == 0;
}

}  // namespace

// JSON: {"entries": [{"name", "params": [{"kind", "const", "size", "type"}], "static_shared"}],
//        "shared": [{"name", "bytes", "function"}], "asm_switch": bool}
TK_EXPORT int tk_emu_describe(char* out, size_t cap) {
  using namespace tk_emu;
  std::vector<SharedSite> sites;
  for (auto* s : shared_sites()) sites.push_back(s());
  size_t len = 0;
  auto put = [&](const char* fmt, auto... a) {
    const int k = snprintf(out + len, len < cap ? cap - len : 0, fmt, a...);
    len += static_cast<size_t>(k);
  };
  put("{\"asm_switch\": %s, \"entries\": [", TK_EMU_ASM ? "true" : "false");
  for (size_t e = 0; e < entries().size(); ++e) {
    const EntryDesc* d = entries()[e];
    size_t shared = 0;
    for (const SharedSite& s : sites)
      if (declared_in(s.function, d->name)) shared += round16(s.bytes);
    put("%s{\"name\": \"%s\", \"static_shared\": %zu, \"params\": [", e ? ", " : "", d->name, shared);
    for (unsigned i = 0; i < d->nparams; ++i) {
      const ParamDesc& p = d->params[i];
      put("%s{\"kind\": \"%c\", \"const\": %s, \"size\": %zu, \"type\": \"%s\"}", i ? ", " : "", p.kind,
          p.is_const ? "true" : "false", p.elem_size, p.type);
    }
    put("]}");
  }
  put("], \"shared\": [");
  for (size_t i = 0; i < sites.size(); ++i) {
    std::string fn;
    for (const char* c = sites[i].function; *c; ++c) {
      if (*c == '"' || *c == '\\') fn += '\\';
      fn += *c;
    }
    put("%s{\"name\": \"%s\", \"bytes\": %zu, \"function\": \"%s\"}", i ? ", " : "", sites[i].name, sites[i].bytes,
        fn.c_str());
  }
  put("]}");
  return len < cap ? static_cast<int>(len) : -static_cast<int>(len);
}

// Layout facts the Python mirror of tk_emu_request checks once.
TK_EXPORT void tk_emu_layout(uint64_t* out) {
  out[0] = sizeof(tk_emu_request);
  out[1] = offsetof(tk_emu_request, params);
  out[2] = offsetof(tk_emu_request, status);
  out[3] = offsetof(tk_emu_request, message);
  out[4] = sizeof(tk_emu_param);
}

// Run the launch described by the request at the start of `mapping` (in the forked child).
TK_EXPORT int tk_emu_run(void* mapping) {
  using namespace tk_emu;
  const uint64_t t0 = now_ns();
  tk_emu_request* req = static_cast<tk_emu_request*>(mapping);
  L.req = req;
  req->status = TK_EMU_NOT_RUN;
  if (req->magic != TK_EMU_MAGIC) {
    snprintf(req->message, sizeof req->message, "bad request (magic)");
    finish(TK_EMU_LOAD_ERROR);
  }
  for (const EntryDesc* d : entries())
    if (strcmp(d->name, req->entry) == 0) L.entry = d;
  if (L.entry == nullptr) {
    snprintf(req->message, sizeof req->message, "the program has no entry '%s'", req->entry);
    finish(TK_EMU_LOAD_ERROR);
  }
  if (req->nparams != L.entry->nparams || req->nparams > TK_EMU_MAX_PARAMS) {
    snprintf(req->message, sizeof req->message, "%s takes %u parameters, the launch passed %u", L.entry->name,
             L.entry->nparams, req->nparams);
    finish(TK_EMU_LOAD_ERROR);
  }
  for (auto* s : shared_sites()) L.sites.push_back(s());
  L.globals.resize(req->nparams);
  L.args.resize(req->nparams);
  for (unsigned i = 0; i < req->nparams; ++i) {
    const tk_emu_param& p = req->params[i];
    if (p.kind == TK_EMU_PTR) {
      L.globals[i] = Buffer{static_cast<char*>(mapping) + p.offset, p.bytes, p.name, GLOBAL};
      L.args[i] = Arg{&L.globals[i], 0};
    } else {
      L.args[i] = Arg{nullptr, p.bits};
    }
  }
  install_signals();
  req->setup_ns = now_ns() - t0;
  run();
  finish(TK_EMU_OK);
}
