#pragma once

// Runs the real actor-system executable as a child process: arguments,
// stdin from a file or a pipe, stdout/stderr captured, exit status awaited
// with a deadline.

#include <catch2/catch.hpp>

#include <chrono>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace flowmatch::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> read_lines(const std::string& path) {
  std::ifstream in{path};
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);)
    lines.push_back(line);
  return lines;
}

inline std::string scratch(const std::string& name) {
  return "/tmp/flowmatch-" + std::to_string(::getpid()) + "-" + name;
}

struct child_process {
  pid_t pid = -1;
  int stdin_fd = -1;  ///< write end when stdin is a pipe
  int stderr_fd = -1; ///< read end of stderr
  std::string stdout_path;

  /// Starts actor-system with `args`. With `pipe_stdin`, the test writes
  /// its input through `stdin_fd`.
  static child_process start(const std::vector<std::string>& args,
                             bool pipe_stdin = false) {
    child_process c;
    c.stdout_path = scratch("stdout-" + std::to_string(std::rand()));
    int in[2] = {-1, -1};
    int err[2];
    if (pipe_stdin)
      REQUIRE(::pipe(in) == 0);
    REQUIRE(::pipe(err) == 0);
    c.pid = ::fork();
    REQUIRE(c.pid >= 0);
    if (c.pid == 0) {
      if (pipe_stdin) {
        ::dup2(in[0], STDIN_FILENO);
        ::close(in[1]);
      }
      int out = ::open(c.stdout_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                       0644);
      ::dup2(out, STDOUT_FILENO);
      ::dup2(err[1], STDERR_FILENO);
      ::close(err[0]);
      std::vector<char*> argv;
      std::string exe = FLOWMATCH_ACTOR_SYSTEM;
      argv.push_back(exe.data());
      // Many nodes run at once in the tests: no HTTP endpoint unless a test
      // asks for one (it listens on 127.0.0.1:9464 by default).
      std::vector<std::string> copy{"--metrics.listen="};
      copy.insert(copy.end(), args.begin(), args.end());
      for (auto& a : copy)
        argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(exe.c_str(), argv.data());
      ::_exit(127);
    }
    if (pipe_stdin) {
      ::close(in[0]);
      c.stdin_fd = in[1];
    }
    ::close(err[1]);
    c.stderr_fd = err[0];
    return c;
  }

  std::string stderr_text;

  /// Reads stderr until a line containing `needle` appeared (or EOF, or the
  /// timeout). Returns whether it appeared.
  bool wait_for_log(const std::string& needle,
                    std::chrono::seconds timeout = std::chrono::seconds{30}) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    while (stderr_text.find(needle) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
      if (left <= 0)
        return false;
      pollfd pfd{stderr_fd, POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left)) <= 0)
        return false;
      auto n = ::read(stderr_fd, buf, sizeof(buf));
      if (n <= 0)
        return false;
      stderr_text.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  void write_input(const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
      auto n = ::write(stdin_fd, text.data() + done, text.size() - done);
      REQUIRE(n > 0);
      done += static_cast<size_t>(n);
    }
  }

  void close_input() {
    if (stdin_fd >= 0)
      ::close(stdin_fd);
    stdin_fd = -1;
  }

  /// Waits for the exit and returns the exit code (-signal when killed).
  /// Keeps draining stderr meanwhile so the child never blocks on it.
  int wait(std::chrono::seconds timeout = std::chrono::seconds{120}) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    char buf[4096];
    for (;;) {
      int status = 0;
      auto r = ::waitpid(pid, &status, WNOHANG);
      if (r == pid) {
        while (true) {
          auto n = ::read(stderr_fd, buf, sizeof(buf));
          if (n <= 0)
            break;
          stderr_text.append(buf, static_cast<size_t>(n));
        }
        ::close(stderr_fd);
        close_input();
        if (WIFEXITED(status))
          return WEXITSTATUS(status);
        return -WTERMSIG(status);
      }
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid, SIGKILL);
        FAIL("actor-system did not exit in time; stderr:\n" << stderr_text);
      }
      // Wait for stderr output or 20 ms, whichever first; this both drains
      // the pipe and paces the waitpid polling.
      pollfd pfd{stderr_fd, POLLIN, 0};
      if (::poll(&pfd, 1, 20) > 0) {
        auto n = ::read(stderr_fd, buf, sizeof(buf));
        if (n > 0)
          stderr_text.append(buf, static_cast<size_t>(n));
      }
    }
  }

  std::string stdout_text() const {
    return read_file(stdout_path);
  }
};

/// Runs to completion; returns the exit code.
inline int run(const std::vector<std::string>& args, std::string* out = nullptr,
               std::string* err = nullptr) {
  auto c = child_process::start(args);
  int code = c.wait();
  if (out)
    *out = c.stdout_text();
  if (err)
    *err = c.stderr_text;
  std::remove(c.stdout_path.c_str());
  return code;
}

} // namespace flowmatch::test
