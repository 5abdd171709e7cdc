// How a kernel call from Python runs without the GIL and is cancelled.
//
// The kernels poll an Interrupt every ~50 ms on the calling thread.  What that poll asks
// depends on the thread that made the call:
//
// * the main thread takes the GIL briefly and lets Python run its signal handlers
//   (Ctrl-C raises KeyboardInterrupt there, or whatever the user's handler raises);
// * another thread cannot run them (Python handles signals in the main thread only), so
//   when SIGINT still has Python's default handler, a small handler chained in front of
//   Python's own counts the SIGINTs the process receives, and the call stops when the
//   count moves.  It then raises KeyboardInterrupt in its own thread;
// * any thread stops when the interpreter begins to finalize (a daemon thread still in a
//   kernel when the main thread returns), and then never takes the GIL again: taking it
//   during finalization ends the thread with pthread_exit, whose unwinding through the
//   C++ frames would abort the process ("terminate called without an active exception").
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <mutex>
#include <thread>

#include "cpu/problem.hpp"

#if defined(__unix__) || defined(__APPLE__)
#define INFOFLOW_CHAIN_SIGINT 1
#endif

namespace infoflow::python {

namespace py = pybind11;

inline bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// The GIL is never taken again once the interpreter finalizes: the thread sleeps until
// the process exits (what Python 3.14 itself does with daemon threads).
[[noreturn]] inline void park_forever() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(24));
}

// Runs f() with the GIL released and takes it back afterwards (also when f throws).
template <class F>
auto without_gil(F&& f) -> decltype(f()) {
  PyThreadState* state = PyEval_SaveThread();
  auto restore = [state] {
    if (interpreter_finalizing()) park_forever();
    PyEval_RestoreThread(state);
  };
  try {
    auto result = f();
    restore();
    return result;
  } catch (...) {
    restore();
    throw;
  }
}

#if defined(INFOFLOW_CHAIN_SIGINT)
inline std::atomic<unsigned long> sigint_count{0};
inline struct sigaction chained_sigint {};
inline std::mutex sigint_hook_mutex;

inline void counting_sigint_handler(int sig, siginfo_t* info, void* context) {
  sigint_count.fetch_add(1, std::memory_order_relaxed);  // lock-free: async-signal-safe
  if (chained_sigint.sa_flags & SA_SIGINFO) {
    if (chained_sigint.sa_sigaction != nullptr) chained_sigint.sa_sigaction(sig, info, context);
  } else if (chained_sigint.sa_handler != SIG_DFL && chained_sigint.sa_handler != SIG_IGN) {
    chained_sigint.sa_handler(sig);
  }
}

// Puts the counting handler in front of the current SIGINT handler, once; again after
// Python replaced it (signal.signal installs Python's own C handler afresh).
inline void ensure_sigint_counter() {
  std::lock_guard<std::mutex> lock(sigint_hook_mutex);
  struct sigaction current {};
  if (sigaction(SIGINT, nullptr, &current) != 0) return;
  if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == &counting_sigint_handler) return;
  if (!(current.sa_flags & SA_SIGINFO) && (current.sa_handler == SIG_DFL || current.sa_handler == SIG_IGN))
    return;  // no handler to chain (SIGINT ignored, or it ends the process anyway)
  chained_sigint = current;
  struct sigaction counting = current;  // same mask and flags (SA_ONSTACK), plus SA_SIGINFO
  counting.sa_flags = (current.sa_flags | SA_SIGINFO) & ~SA_RESETHAND;
  counting.sa_sigaction = &counting_sigint_handler;
  sigaction(SIGINT, &counting, nullptr);
}
#endif

// What a call's poll needs; made with the GIL held, before the kernel starts.
class CallCancel {
 public:
  CallCancel() {
    const py::object threading = py::module_::import("threading");
    main_thread_ = threading.attr("main_thread")().attr("ident").cast<unsigned long>() ==
                   PyThread_get_thread_ident();
#if defined(INFOFLOW_CHAIN_SIGINT)
    if (!main_thread_) {
      // Only a default Ctrl-C (KeyboardInterrupt) cancels a call in another thread: a
      // handler of the user's own decides for itself what Ctrl-C means.
      const py::object signal = py::module_::import("signal");
      watch_sigint_ = signal.attr("getsignal")(static_cast<int>(SIGINT)).is(signal.attr("default_int_handler"));
      if (watch_sigint_) {
        ensure_sigint_counter();
        sigint_seen_ = sigint_count.load();
      }
    }
#endif
  }

  cpu::Interrupt interrupt() { return {&CallCancel::poll, this}; }

  // After a cancelled call, with the GIL held: raise in Python.
  [[noreturn]] void raise() const {
    if (!PyErr_Occurred()) PyErr_SetNone(PyExc_KeyboardInterrupt);
    throw py::error_already_set();
  }

 private:
  static bool poll(void* context) {
    auto* self = static_cast<CallCancel*>(context);
    if (interpreter_finalizing()) return true;
    if (self->main_thread_) {
      py::gil_scoped_acquire gil;
      return PyErr_CheckSignals() != 0;
    }
#if defined(INFOFLOW_CHAIN_SIGINT)
    return self->watch_sigint_ && sigint_count.load(std::memory_order_relaxed) != self->sigint_seen_;
#else
    return false;
#endif
  }

  bool main_thread_ = true;
  bool watch_sigint_ = false;
  unsigned long sigint_seen_ = 0;
};

}  // namespace infoflow::python
