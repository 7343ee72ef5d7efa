#pragma once

// Fan-out and gather: one request to each of n actors, one answer each,
// then one result. The one way flowmatch asks several actors at once
// (pools for snapshots, partitions for restores, sinks for stores), so
// that counting and error handling are the same everywhere: every answer
// goes to `each` in arrival order; after the last, `done` runs once; the
// first error goes to `fail` and ends the gather (later answers are
// ignored). With n == 0, `done` runs at once.

#include <caf/error.hpp>

#include <cstddef>
#include <memory>
#include <utility>

namespace flowmatch {

/// `ask(i)` sends request i and returns its response handle (the result of
/// `self->request(...)`); `Reply` is what each answer carries.
template <class Reply, class Ask, class Each, class Done, class Fail>
void gather(size_t n, Ask ask, Each each, Done done, Fail fail) {
  if (n == 0) {
    done();
    return;
  }
  struct progress {
    size_t pending;
    bool failed = false;
  };
  auto p = std::make_shared<progress>(progress{n});
  auto shared_each = std::make_shared<Each>(std::move(each));
  auto shared_done = std::make_shared<Done>(std::move(done));
  auto shared_fail = std::make_shared<Fail>(std::move(fail));
  for (size_t i = 0; i < n; ++i)
    ask(i).then(
      [p, shared_each, shared_done](Reply& reply) {
        if (p->failed)
          return;
        (*shared_each)(reply);
        if (--p->pending == 0)
          (*shared_done)();
      },
      [p, shared_fail](caf::error& err) {
        if (p->failed)
          return;
        p->failed = true;
        (*shared_fail)(err);
      });
}

/// The common case: deliver into a response promise; errors go to it too.
template <class Reply, class Promise, class Ask, class Each, class Done>
void gather_into(Promise rp, size_t n, Ask ask, Each each, Done done) {
  gather<Reply>(
    n, std::move(ask), std::move(each),
    [rp, done = std::move(done)]() mutable { rp.deliver(done()); },
    [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
}

/// Gathers `Counts` answers (with an `operator+=`) into their sum.
template <class Counts, class Promise, class Ask>
void sum_into(Promise rp, size_t n, Ask ask) {
  auto sum = std::make_shared<Counts>();
  gather_into<Counts>(
    std::move(rp), n, std::move(ask), [sum](Counts& x) { *sum += x; },
    [sum] { return std::move(*sum); });
}

} // namespace flowmatch
