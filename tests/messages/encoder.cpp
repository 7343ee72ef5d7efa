// Snapshot and dead-letter lines: valid JSON, decodable back to the same
// entities, with odd bytes made safe.

#include "messages/encoder.hpp"

#include "base/logging.hpp"

#include "messages/decoder.hpp"
#include "messages/units.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <stdexcept>

using namespace flowmatch;

TEST_CASE("a site snapshot line decodes back to the same site") {
  site s;
  s.site_id = "a\"b\\c";
  s.name = std::string{"Hütte \n Linz"};
  s.lat = 48.28194400000001;
  s.lon = -0.1;
  s.country = std::string{"AT"};
  s.version = int64_t{42};
  event_decoder dec;
  auto r = dec.decode(site_snapshot_line(s), event_origin{"snap", 1});
  REQUIRE(std::holds_alternative<event>(r));
  auto ev = std::get<event>(r);
  CHECK(ev.type == event_type::site_created);
  CHECK(ev.site_data == s);
}

TEST_CASE("a flow snapshot line decodes back to the same flow") {
  resource_flow f;
  f.flow_id = "f";
  f.site_id = "s";
  f.direction = flow_direction::demand;
  f.resource = resource_class::material;
  f.quantity = 1.0 / 3.0;
  f.unit = "kt/yr";
  f.annual_quantity = 1000.0 / 3.0;
  f.accepts_ewc = std::vector<std::string>{"10", "1002"};
  f.accepts_hazardous = true;
  f.max_transport_km = 80;
  f.operating_hours = 7000.5;
  event_decoder dec;
  auto line = flow_snapshot_line(f);
  auto r = dec.decode(line, event_origin{"snap", 1});
  REQUIRE(std::holds_alternative<event>(r));
  auto back = std::get<event>(r).flow_data;
  CHECK(back.flow_id == f.flow_id);
  CHECK(back.quantity == f.quantity);
  CHECK(back.annual_quantity == *to_annual_quantity(f.resource, f.unit,
                                                   f.quantity, 7000.5));
  CHECK(*back.accepts_ewc == *f.accepts_ewc);
  CHECK(*back.accepts_hazardous);
  CHECK(*back.operating_hours == 7000.5);
}

TEST_CASE("dead letters are JSON even for invalid UTF-8 payloads") {
  dead_letter dl;
  dl.reason = reject_reason::invalid_utf8;
  dl.detail = "bad";
  dl.origin = event_origin{"in.ndjson", 12};
  dl.payload = "{\"id\":\"\xff\"}";
  auto line = dead_letter_line(dl);
  event_decoder dec; // any JSON parser would do: it must parse
  simdjson::dom::parser p;
  simdjson::dom::element doc;
  REQUIRE(p.parse(line).get(doc) == simdjson::SUCCESS);
  CHECK(std::string_view{doc["reason"].get_string().value()} == "invalid_utf8");
  CHECK(doc["event_id"].is_null());
  CHECK(int64_t{doc["line"].get_int64().value()} == 12);
}

TEST_CASE("the encoders refuse non-finite numbers (no NaN or inf in any "
          "output)") {
  std::string out;
  CHECK_THROWS_AS(append_json_number(out, std::nan("")), std::domain_error);
  CHECK_THROWS_AS(append_json_number(out, HUGE_VAL), std::domain_error);
  CHECK_THROWS_AS(append_json_number(out, -HUGE_VAL), std::domain_error);
  CHECK(out.empty());
  append_json_number(out, 1e-320);
  CHECK(out == "1e-320");
}

TEST_CASE("a JSON log line holds time, level, actor, message and the event "
          "id, escaped") {
  using namespace std::chrono;
  auto t = system_clock::time_point{milliseconds{1795991021491}};
  auto line = json_log_line(
    t, "warning",
    "dead-letter-sink wrong_type at in.ndjson:3 (event e\"7): data.lat \\ "
    "must be a number\n");
  CHECK(line
        == "{\"time\":\"2026-11-29T22:23:41.491Z\",\"level\":\"warning\","
           "\"actor\":\"dead-letter-sink\",\"message\":\"wrong_type at "
           "in.ndjson:3 (event e\\\"7): data.lat \\\\ must be a "
           "number\\n\",\"event_id\":\"e\\\"7\"}\n");
  auto plain = json_log_line(t, "info", "node running (event -)");
  CHECK(plain.find("event_id") == std::string::npos);
  CHECK(plain.find("\"actor\":\"node\"") != std::string::npos);
}
