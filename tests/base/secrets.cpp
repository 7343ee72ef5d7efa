// Passwords are masked wherever flowmatch writes a conninfo or a URL.

#include "base/secrets.hpp"

#include <catch2/catch.hpp>

using flowmatch::mask_secrets;
using flowmatch::may_hold_secret;

TEST_CASE("conninfo passwords are masked, the rest is kept") {
  CHECK(mask_secrets("host=db port=5432 user=app password=s3cret dbname=x")
        == "host=db port=5432 user=app password=*** dbname=x");
  CHECK(mask_secrets("password = s3cret host=db")
        == "password = *** host=db");
  // libpq's quoting: single quotes, a backslash escapes the next one.
  CHECK(mask_secrets("host=db password='a \\' secret' user=u")
        == "host=db password='***' user=u");
  CHECK(mask_secrets("host=db PASSWORD=s3cret") == "host=db PASSWORD=***");
  CHECK(mask_secrets("sslpassword=keypass host=x") == "sslpassword=*** host=x");
  // A quote that never closes hides everything after it.
  CHECK(mask_secrets("password='open host=x") == "password='***'");
  CHECK(mask_secrets("password=") == "password=***");
}

TEST_CASE("URL passwords are masked, user and host kept") {
  CHECK(mask_secrets("postgresql://app:s3cret@db:5432/x?sslmode=require")
        == "postgresql://app:***@db:5432/x?sslmode=require");
  CHECK(mask_secrets("postgres://app:p%40ss@db/x") == "postgres://app:***@db/x");
  CHECK(mask_secrets("redis://:s3cret@127.0.0.1:6379/0")
        == "redis://:***@127.0.0.1:6379/0");
  CHECK(mask_secrets("postgresql://db/x?user=app&password=s3cret&x=1")
        == "postgresql://db/x?user=app&password=***&x=1");
  // Without user information nothing changes.
  CHECK(mask_secrets("redis://127.0.0.1:6379") == "redis://127.0.0.1:6379");
  CHECK(mask_secrets("postgresql://app@db/x") == "postgresql://app@db/x");
  // Inside a sentence (a log line), twice.
  CHECK(mask_secrets("cannot reach redis://:a@h:1 nor redis://u:b@h:2 now")
        == "cannot reach redis://:***@h:1 nor redis://u:***@h:2 now");
}

TEST_CASE("text without a secret passes unchanged") {
  for (auto text : {"", "node running: input -, 2 workers",
                    "site A (event e1) applied", "a=b c=d", "pass=x",
                    "the password is not in this line"}) {
    CHECK(mask_secrets(text) == text);
  }
  CHECK_FALSE(may_hold_secret("dispatcher group registry: 2 workers"));
  CHECK(may_hold_secret("password=x"));
  CHECK(may_hold_secret("redis://h"));
}
