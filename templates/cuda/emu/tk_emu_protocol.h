// tk_emu_protocol.h -- the launch request: one shared mapping between Python (tunekit/cuda/emu_server.py
// mirrors this struct with ctypes), the helper process (tk_emu_server.cpp) and the kernel's child
// process (tk_emu_launch.cpp). The argument buffers follow the struct in the same mapping.
#pragma once

#include <cstdint>

#define TK_EMU_MAGIC 0x3130554d454b54ull  // "TKEMU01"
#define TK_EMU_MAX_PARAMS 64

enum tk_emu_status : int32_t {
  TK_EMU_OK = 0,
  TK_EMU_FAULT = 1,        // the kernel did something wrong (message)
  TK_EMU_REFUSED = 2,      // over a limit found while running (message)
  TK_EMU_STATIC_GREW = 3,  // more static shared memory than the launcher checked (static_shared_used)
  TK_EMU_TIMEOUT = 4,      // ran past timeout_s (message names the running thread)
  TK_EMU_CRASH = 5,        // a signal (signal, message)
  TK_EMU_LOAD_ERROR = 6,   // the library or entry could not be loaded (message)
  TK_EMU_NOT_RUN = 7,      // the child ended without writing a status (signal / exit code in message)
};

enum tk_emu_kind : uint32_t { TK_EMU_PTR = 0, TK_EMU_I32 = 1, TK_EMU_U32 = 2, TK_EMU_I64 = 3, TK_EMU_F32 = 4 };

struct tk_emu_param {
  uint32_t kind;
  uint32_t pad;
  uint64_t offset;  // ptr: byte offset of the buffer in the mapping
  uint64_t bytes;   // ptr: its size
  uint64_t bits;    // scalars: the value's bits (sign-extended for i32/i64, float bits for f32)
  char name[64];
};

struct tk_emu_request {
  uint64_t magic;
  uint64_t size;  // bytes of the whole mapping
  char library[1024];
  char entry[128];
  uint32_t grid[3];
  uint32_t block[3];
  uint64_t dynamic_shared;
  uint64_t static_shared_checked;  // static shared bytes the launcher checked against the limits
  uint64_t stack_bytes;            // per fiber
  double timeout_s;
  uint32_t cooperative;
  uint32_t nparams;
  tk_emu_param params[TK_EMU_MAX_PARAMS];
  // ---- reply (child, then server)
  int32_t status;
  int32_t signal;
  uint64_t static_shared_used;
  uint64_t switches;
  uint64_t fibers;
  uint64_t guard_pages;  // 1: every fiber stack has a guard page; 0: canaries only (too many fibers)
  uint64_t run_ns;       // scheduling the kernel's threads, in the child
  uint64_t setup_ns;     // stacks, buffers, signal handlers, in the child
  uint64_t child_ns;     // fork to exit, measured by the server
  char message[8192];
};
