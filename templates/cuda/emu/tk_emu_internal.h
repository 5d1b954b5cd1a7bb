// tk_emu_internal.h -- what the emulator runtime's three parts share (not seen by kernels):
// fibers, blocks, the launch, messages. tk_emu_sched.cpp schedules the fibers (context switch,
// blocks, barriers, grid sync, deadlock); tk_emu_warp.cpp runs the warp collectives (shuffles,
// votes, mma, ldmatrix) and cp.async; tk_emu_launch.cpp reads the request, registers shared memory
// and entries, reports faults and signals, and exports tk_emu_run / tk_emu_describe.
#pragma once

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
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

namespace tk_emu {

#pragma GCC visibility push(hidden)

struct Ctx {
#if TK_EMU_ASM
  void* sp;
#else
  ucontext_t uc;
#endif
};

enum State : uint8_t { READY, RUNNING, WAIT_BLOCK, WAIT_WARP, WAIT_GRID, DONE };

inline constexpr unsigned OPEN_GROUP = ~0u;
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

std::vector<SharedSite (*)()>& shared_sites();  // every TK_SHARED of the program, registered at load
std::vector<const EntryDesc*>& entries();        // every TK_EMU_ENTRY

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
extern Launch L;

inline constexpr uint64_t CANARY = 0x5ca1ab1e0ddba11ull;
inline constexpr int MADV_GUARD_INSTALL_ = 102;  // <linux/mman.h> of Linux 6.13
inline constexpr size_t PAGE = 4096;

// ---- messages (tk_emu_launch.cpp) ----------------------------------------------------------------
const char* base_name(const char* path);
bool same_site(const Loc& a, const Loc& b);
const char* kind_name(int kind);

// "k.cu:42"
struct SiteText {
  char s[320];
  explicit SiteText(const Loc& loc) { snprintf(s, sizeof s, "%s:%u", base_name(loc.file_name()), loc.line()); }
};

// "block (x,y,z) thread (x,y,z)"
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

inline Fiber* cur() { return static_cast<Fiber*>(g_cur); }

[[noreturn]] void finish(int status);
// "<entry>: block (..) thread (..): <text>" into the request, then end the child
[[noreturn]] __attribute__((format(printf, 2, 3))) void fail(int status, const char* fmt, ...);
uint64_t now_ns();
inline size_t round16(size_t n) { return (n + 15) & ~size_t(15); }

// ---- scheduling (tk_emu_sched.cpp) ---------------------------------------------------------------
inline void push(Block* b, Fiber* f) {
  f->state = READY;
  b->queue[(b->qhead + b->qlen) % b->n] = f;
  ++b->qlen;
}
// The current fiber waits: run the next ready fiber of its block, or return to the scheduler.
void switch_away(Fiber* f);
// Run every block of the launch described by L.req until all threads end (or a fault).
void run();

#pragma GCC visibility pop

}  // namespace tk_emu
