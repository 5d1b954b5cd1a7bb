// tk_emu_server.cpp -- the emulator's helper process (tunekit/cuda/emu_server.py starts it).
//
// Python sends one message per launch over a SOCK_SEQPACKET socket, with a memfd attached: the
// tk_emu_request and the argument buffers. The server loads the program's shared library (once),
// forks a child that runs tk_emu_run() on the shared mapping, waits for it (a time-out backstop
// kills it), fills in what the child could not write (a signal, a kill), and replies. Forking this
// small process costs well under a millisecond; forking the Python process with torch loaded cost
// 7-58 ms here, which is why the kernel does not run in a fork of Python.
#include <dlfcn.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>

#include "tk_emu_protocol.h"

namespace {

using RunFn = int (*)(void*);

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

int recv_fd(int sock, char* cmd) {
  char data[16];
  iovec iov{data, sizeof data};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n <= 0) return -1;
  *cmd = data[0];
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int fd;
      memcpy(&fd, CMSG_DATA(c), sizeof fd);
      return fd;
    }
  }
  return -2;
}

// Wait for the child until `timeout_ms` (< 0: forever); true when it ended.
bool wait_child(pid_t pid, int timeout_ms, int* status) {
  const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (pidfd >= 0) {
    pollfd p{pidfd, POLLIN, 0};
    int r;
    do r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    close(pidfd);
    if (r == 0) return false;
    waitpid(pid, status, 0);
    return true;
  }
  // no pidfd (Linux < 5.3): poll waitpid every 0.2 ms
  const uint64_t deadline = now_ns() + static_cast<uint64_t>(timeout_ms) * 1000000ull;
  for (;;) {
    if (waitpid(pid, status, WNOHANG) == pid) return true;
    if (timeout_ms >= 0 && now_ns() > deadline) return false;
    timespec ts{0, 200000};
    nanosleep(&ts, nullptr);
  }
}

void launch(int fd, int sock, std::map<std::string, RunFn>& libraries) {
  struct stat st;
  if (fstat(fd, &st) != 0 || static_cast<size_t>(st.st_size) < sizeof(tk_emu_request)) return;
  void* map = mmap(nullptr, static_cast<size_t>(st.st_size), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) return;
  auto* req = static_cast<tk_emu_request*>(map);
  req->status = TK_EMU_NOT_RUN;
  req->message[0] = 0;
  req->library[sizeof req->library - 1] = 0;
  auto it = libraries.find(req->library);
  if (it == libraries.end()) {
    void* h = dlopen(req->library, RTLD_NOW | RTLD_LOCAL);
    RunFn fn = h ? reinterpret_cast<RunFn>(dlsym(h, "tk_emu_run")) : nullptr;
    if (fn == nullptr) {
      req->status = TK_EMU_LOAD_ERROR;
      snprintf(req->message, sizeof req->message, "cannot load %s: %s", req->library, dlerror());
      munmap(map, static_cast<size_t>(st.st_size));
      return;
    }
    it = libraries.emplace(req->library, fn).first;
  }
  const uint64_t t0 = now_ns();
  fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(sock);
    close(fd);
    it->second(map);  // ends the child
    _exit(0);
  }
  if (pid < 0) {
    req->status = TK_EMU_LOAD_ERROR;
    snprintf(req->message, sizeof req->message, "fork failed: %s", strerror(errno));
    munmap(map, static_cast<size_t>(st.st_size));
    return;
  }
  // the child's own timer reports a time-out with the running thread; this is the backstop
  const int backstop_ms = req->timeout_s > 0 ? static_cast<int>(req->timeout_s * 1000.0) + 5000 : -1;
  int status = 0;
  if (!wait_child(pid, backstop_ms, &status)) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    if (req->status == TK_EMU_NOT_RUN) {
      req->status = TK_EMU_TIMEOUT;
      snprintf(req->message, sizeof req->message, "%s: time-out: killed after %.3g s (the child's own timer did not "
               "fire)", req->entry, req->timeout_s + 5.0);
    }
  } else if (req->status == TK_EMU_NOT_RUN) {
    if (WIFSIGNALED(status)) {
      req->signal = WTERMSIG(status);
      req->status = TK_EMU_CRASH;
      snprintf(req->message, sizeof req->message, "%s: the kernel's process was killed by signal %d (%s)%s", req->entry,
               WTERMSIG(status), strsignal(WTERMSIG(status)),
               WTERMSIG(status) == SIGKILL ? ": out of memory?" : "");
    } else {
      snprintf(req->message, sizeof req->message, "%s: the kernel's process exited with code %d before the launch "
               "ended (exit() in a kernel?)", req->entry, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    }
  }
  req->child_ns = now_ns() - t0;
  munmap(map, static_cast<size_t>(st.st_size));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s SOCKET_FD (started by tunekit.cuda.emu_server)\n", argv[0]);
    return 2;
  }
  prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the Python process
  const int sock = atoi(argv[1]);
  signal(SIGPIPE, SIG_IGN);
  std::map<std::string, RunFn> libraries;
  for (;;) {
    char cmd = 0;
    const int fd = recv_fd(sock, &cmd);
    if (fd == -1) return 0;  // Python closed its end
    if (fd >= 0 && cmd == 'L') launch(fd, sock, libraries);
    if (fd >= 0) close(fd);
    const char done = 'D';
    if (send(sock, &done, 1, 0) != 1) return 0;
  }
}
