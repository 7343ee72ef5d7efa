// The token bucket of `ingest.max-rate` on a test clock.

#include "core/token_bucket.hpp"

#include <catch2/catch.hpp>

using namespace flowmatch;
using namespace std::chrono_literals;

TEST_CASE("a token bucket lets a burst through, then the rate") {
  auto t0 = token_bucket::clock::time_point{};
  token_bucket b{1000, 100, t0}; // 1000 events/s, burst 100
  CHECK(b.limited());
  CHECK(b.available(t0) == Approx(100));
  CHECK(b.wait_for(100, t0) == 0us);
  b.take(100, t0);
  // Empty: 50 more need 50 ms.
  auto w = b.wait_for(50, t0);
  CHECK(w >= 50ms);
  CHECK(w < 51ms);
  // After 20 ms, 20 tokens are back.
  CHECK(b.available(t0 + 20ms) == Approx(20));
  // Never more than the burst, however long it waited.
  CHECK(b.available(t0 + 10s) == Approx(100));
  // A batch larger than the burst waits only for the burst.
  b.take(100, t0 + 10s);
  CHECK(b.wait_for(1000, t0 + 10s) <= 101ms);
}

TEST_CASE("a debt from a batch read past the balance is waited off") {
  auto t0 = token_bucket::clock::time_point{};
  token_bucket b{100, 10, t0};
  b.take(30, t0); // a batch of 30 on a balance of 10: 20 owed
  CHECK(b.available(t0) == Approx(-20));
  CHECK(b.wait_for(1, t0) >= 210ms);
  CHECK(b.available(t0 + 210ms) == Approx(1));
}

TEST_CASE("rate 0 means no limit") {
  token_bucket b;
  CHECK_FALSE(b.limited());
  b.take(1e9, token_bucket::clock::now());
  CHECK(b.wait_for(1e9, token_bucket::clock::now()) == 0us);
}
