// tk_emu_sched.cpp -- one fiber per CUDA thread, on one OS thread: the context switch, blocks,
// the scheduler, barriers, grid sync and deadlock detection (tk_emu_internal.h has the types).
//
// A fiber runs until a barrier, a warp collective, a grid sync or its end, then switches directly
// to the next ready fiber of its block (or back to the scheduler when none is ready). A collective
// completes when its last participant arrives: that fiber computes every lane's result and goes on.
#include <sys/mman.h>

#include <algorithm>
#include <utility>

#include "tk_emu_internal.h"

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
namespace {

// ---- fibers ------------------------------------------------------------------------------------

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

}  // namespace

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

namespace {

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
  auto put = [&](const char* fmt, auto... args) {  // append, truncating at the end of `text`
    if (len + 1 >= sizeof text) return;
    const int k = snprintf(text + len, sizeof text - len, fmt, args...);
    if (k > 0) len = std::min(sizeof text - 1, len + static_cast<size_t>(k));
  };
  text[0] = 0;
  int shown = 0;
  for (Block& b : L.blocks) {
    if (b.done == b.n) continue;
    if (shown++ == 4) {
      put(" ...");
      break;
    }
    put("%s block (%u,%u,%u):", shown > 1 ? ";" : "", b.idx.x, b.idx.y, b.idx.z);
    unsigned i = 0;
    int groups = 0;
    while (i < b.n) {
      char s0[400], s1[400];
      state_text(&b.fibers[i], s0, sizeof s0);
      unsigned j = i + 1;
      while (j < b.n && strcmp(state_text(&b.fibers[j], s1, sizeof s1), s0) == 0) ++j;
      if (b.fibers[i].state != DONE) put("%s threads %u-%u %s", groups++ ? "," : "", i, j - 1, s0);
      i = j;
    }
  }
  g_cur = nullptr;
  fail(TK_EMU_FAULT, "deadlock: no thread can go on (threads of a warp wait at different collectives, or a block's "
       "threads at a barrier and a warp collective):%s", text);
}


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

}  // namespace

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
}  // namespace tk_emu
