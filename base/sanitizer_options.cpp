// Default options of the sanitizer runtimes, in every executable of a
// sanitizer build (FLOWMATCH_SANITIZE), so a test, the node and the fuzz
// targets behave the same without environment variables: the first report
// ends the process (so the test that hit it fails), and the suppressions in
// tools/sanitizers/ (each with its reason) apply. UBSan is compiled
// recoverable only because its suppressions are ignored otherwise;
// halt_on_error makes every report not suppressed fatal all the same.

#ifdef FLOWMATCH_SANITIZER_DIR

extern "C" {

const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1:suppressions=" FLOWMATCH_SANITIZER_DIR
         "/ubsan.supp";
}

const char* __asan_default_options() {
  return "detect_leaks=1:allocator_may_return_null=1:suppressions=" FLOWMATCH_SANITIZER_DIR
         "/asan.supp";
}

const char* __lsan_default_options() {
  return "suppressions=" FLOWMATCH_SANITIZER_DIR "/lsan.supp";
}

const char* __tsan_default_options() {
  return "halt_on_error=1:second_deadlock_stack=1:suppressions=" FLOWMATCH_SANITIZER_DIR
         "/tsan.supp";
}

} // extern "C"

#endif

// Referenced by the linker flag of sanitizer builds (CMakeLists.txt), so
// this object file is always linked.
extern "C" {
int flowmatch_sanitizer_options_linked = 0;
}
