// tk_emu_launch.cpp -- one launch in the child process: the request, the registries of entries and
// TK_SHARED declarations, shared memory, fault messages, signals (a crash or the time-out ends the
// child with a message), and the exports tk_emu_run, tk_emu_describe and tk_emu_layout.
//
// Compiled once into the runtime object (with tk_emu_sched.cpp and tk_emu_warp.cpp), cached by
// content hash and linked into every kernel program's shared library; the helper process
// (tk_emu_server.cpp) forks a child per launch and calls tk_emu_run() there.
#include <signal.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <string>

#include "tk_emu_internal.h"

namespace tk_emu {

ThreadCtx* g_cur = nullptr;
dim3 g_block_dim, g_grid_dim;
Launch L;

std::vector<SharedSite (*)()>& shared_sites() {
  static std::vector<SharedSite (*)()> v;
  return v;
}
std::vector<const EntryDesc*>& entries() {
  static std::vector<const EntryDesc*> v;
  return v;
}

// ---- messages ----------------------------------------------------------------------------------

const char* base_name(const char* path) {
  const char* s = strrchr(path, '/');
  return s ? s + 1 : path;
}

bool same_site(const Loc& a, const Loc& b) {
  return a.line() == b.line() && a.column() == b.column() &&
         (a.file_name() == b.file_name() || strcmp(a.file_name(), b.file_name()) == 0);
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

void finish(int status) {
  if (L.req) {
    L.req->status = status;
    L.req->switches = L.switches;
  }
  fflush(nullptr);  // a kernel's printf
  _exit(0);
}

void fail(int status, const char* fmt, ...) {
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

}  // namespace

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// A fixed scrambled order of a non-cooperative launch's blocks (not blockIdx order: a kernel whose

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

