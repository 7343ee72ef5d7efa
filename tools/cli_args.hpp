#pragma once

// The command line as the operator tools (flowmatch-publish,
// flowmatch-redrive) read it: options as `--name value` or `--name=value`,
// `-h`/`--help` printing the usage, and one function that refuses bad
// arguments (it prints why and exits).

#include <cstdio>
#include <cstdlib>
#include <string>

namespace flowmatch {

class cli_args {
public:
  using refuse_fn = void (*)(const std::string& why);

  cli_args(int argc, char** argv, const char* usage, refuse_fn refuse)
    : argc_(argc), argv_(argv), usage_(usage), refuse_(refuse) {
  }

  /// Moves to the next argument; false after the last. Answers `--help`
  /// itself.
  bool next() {
    if (++i_ >= argc_)
      return false;
    arg_ = argv_[i_];
    if (arg_ == "-h" || arg_ == "--help") {
      std::fputs(usage_, stdout);
      std::exit(0);
    }
    return true;
  }

  const std::string& arg() const {
    return arg_;
  }

  /// Whether the argument is option `name`, with or without `=value`.
  bool is(const char* name) const {
    return arg_ == name || arg_.rfind(std::string{name} + "=", 0) == 0;
  }

  /// The value of option `name`: after its `=`, or the next argument.
  std::string value(const char* name) {
    auto eq = arg_.find('=');
    if (eq != std::string::npos)
      return arg_.substr(eq + 1);
    if (i_ + 1 >= argc_) {
      refuse_(std::string{name} + " needs a value");
      std::exit(2); // refuse_ exits; this only tells the compiler
    }
    return argv_[++i_];
  }

private:
  int argc_;
  char** argv_;
  const char* usage_;
  refuse_fn refuse_;
  int i_ = 0;
  std::string arg_;
};

} // namespace flowmatch
