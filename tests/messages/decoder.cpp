// The decoder and validator against every rule of the event contract and
// every class of bad input.

#include "messages/decoder.hpp"

#include <catch2/catch.hpp>

#include <cmath>
#include <string>
#include <vector>

using namespace flowmatch;

namespace {

decode_result decode(const std::string& line) {
  static event_decoder decoder;
  return decoder.decode(line, event_origin{"test", 7});
}

event accept(const std::string& line) {
  auto r = decode(line);
  if (auto* dl = std::get_if<dead_letter>(&r))
    FAIL("expected acceptance of " << line << "\nbut got "
                                   << to_string(dl->reason) << ": "
                                   << dl->detail);
  return std::get<event>(r);
}

dead_letter refuse(const std::string& line) {
  auto r = decode(line);
  if (std::holds_alternative<event>(r))
    FAIL("expected rejection of " << line);
  return std::get<dead_letter>(r);
}

/// Wraps a flow's data fields into a full event line.
std::string flow_line(const std::string& fields) {
  return R"({"id":"f1","type":"resource_flow_created","data":{"flow_id":"fl","site_id":"s",)"
         + fields + "}}";
}

std::string site_line(const std::string& fields) {
  return R"({"id":"s1","type":"site_created","data":{"site_id":"s",)" + fields
         + "}}";
}

const std::string heat_ok
  = R"("direction":"supply","resource":"heat","quantity":5,"unit":"MW","temperature_c":120)";

} // namespace

TEST_CASE("a valid site is decoded with all its fields") {
  auto ev = accept(
    R"({"id":"e1","type":"site_created","time":"2026-11-27T10:00:00Z","data":{"site_id":"linz-steel","name":"Steelworks Linz","lat":48.2819,"lon":14.3431,"country":"AT","nace":"24.10","version":3}})");
  CHECK(ev.id == "e1");
  CHECK(ev.type == event_type::site_created);
  CHECK(ev.time == "2026-11-27T10:00:00Z");
  CHECK(ev.site_data.site_id == "linz-steel");
  CHECK(*ev.site_data.name == "Steelworks Linz");
  CHECK(ev.site_data.lat == 48.2819);
  CHECK(ev.site_data.lon == 14.3431);
  CHECK(*ev.site_data.country == "AT");
  CHECK(*ev.site_data.nace == "24.10");
  CHECK(*ev.site_data.version == 3);
  CHECK(ev.origin.source == "test");
  CHECK(ev.origin.line == 7);
  CHECK_FALSE(ev.raw.empty());
}

TEST_CASE("optional fields may be absent or null and unknown fields are ignored") {
  auto ev = accept(site_line(R"("lat":1,"lon":2,"name":null,"future_field":{"x":[1,2]})"));
  CHECK_FALSE(ev.site_data.name);
  CHECK_FALSE(ev.site_data.version);
  auto top = accept(
    R"({"id":"e","type":"site_deleted","extra":1,"data":{"site_id":"s"}})");
  CHECK(top.target_id == "s");
}

TEST_CASE("deletes carry only the id") {
  auto s = accept(R"({"id":"d1","type":"site_deleted","data":{"site_id":"a"}})");
  CHECK(s.type == event_type::site_deleted);
  CHECK(s.target_id == "a");
  auto f = accept(
    R"({"id":"d2","type":"resource_flow_deleted","data":{"flow_id":"b"}})");
  CHECK(f.type == event_type::resource_flow_deleted);
  CHECK(f.target_id == "b");
  CHECK(refuse(R"({"id":"d3","type":"resource_flow_deleted","data":{}})").reason
        == reject_reason::missing_field);
}

TEST_CASE("every flow class decodes with its class-specific fields") {
  auto heat = accept(flow_line(heat_ok + R"(,"medium":"steam","max_transport_km":12.5,"version":2)"));
  CHECK(heat.flow_data.resource == resource_class::heat);
  CHECK(heat.flow_data.direction == flow_direction::supply);
  CHECK(*heat.flow_data.temperature_c == 120);
  CHECK(*heat.flow_data.medium == "steam");
  CHECK(*heat.flow_data.max_transport_km == 12.5);
  CHECK(heat.flow_data.annual_quantity == 5 * 8760.0); // MW x 8760 h

  auto slag = accept(flow_line(
    R"("direction":"supply","resource":"material","quantity":2,"unit":"kt/yr","ewc":"100202","hazardous":true)"));
  CHECK(*slag.flow_data.ewc == "100202");
  CHECK(*slag.flow_data.hazardous);
  CHECK(slag.flow_data.annual_quantity == 2000);

  auto cement = accept(flow_line(
    R"("direction":"demand","resource":"material","quantity":10,"unit":"t/h","operating_hours":4000,"accepts_ewc":["1002","100101","10"],"accepts_hazardous":false)"));
  REQUIRE(cement.flow_data.accepts_ewc);
  CHECK(cement.flow_data.accepts_ewc->size() == 3);
  CHECK(cement.flow_data.annual_quantity == 40000); // 10 t/h x 4000 h

  auto water = accept(flow_line(
    R"("direction":"demand","resource":"water","quantity":100,"unit":"m3/d")"));
  CHECK(water.flow_data.annual_quantity == 36500); // 100 m3/d x 365

  auto co2 = accept(flow_line(
    R"("direction":"supply","resource":"co2","quantity":500,"unit":"kg/h","operating_hours":2000)"));
  CHECK(co2.flow_data.annual_quantity == 1000); // 500 kg/h x 2000 h / 1000
}

TEST_CASE("malformed JSON and invalid UTF-8 and non-objects each have a reason") {
  CHECK(refuse(R"({"id":"x", oops})").reason == reject_reason::malformed_json);
  CHECK(refuse("").reason == reject_reason::malformed_json);
  CHECK(refuse(R"({"id":"x")").reason == reject_reason::malformed_json);
  CHECK(refuse("{\"id\":\"\xff\xfe\"}").reason == reject_reason::invalid_utf8);
  CHECK(refuse("{\"id\":\"\xc3\x28\"}").reason == reject_reason::invalid_utf8);
  CHECK(refuse("[1,2]").reason == reject_reason::not_an_object);
  CHECK(refuse("\"text\"").reason == reject_reason::not_an_object);
}

TEST_CASE("NaN and Infinity and numbers beyond double range are non-finite") {
  CHECK(refuse(site_line(R"("lat":NaN,"lon":0)")).reason
        == reject_reason::non_finite_number);
  CHECK(refuse(site_line(R"("lat":Infinity,"lon":0)")).reason
        == reject_reason::non_finite_number);
  CHECK(refuse(site_line(R"("lat":-Infinity,"lon":0)")).reason
        == reject_reason::non_finite_number);
  CHECK(refuse(site_line(R"("lat":1e999,"lon":0)")).reason
        == reject_reason::non_finite_number);
  // "NaN" inside a string is just text.
  CHECK(refuse(site_line(R"("lat":"NaN","lon":0)")).reason
        == reject_reason::wrong_type);
}

TEST_CASE("a line over 1 MiB is rejected and only a prefix kept") {
  std::string big = site_line(R"("lat":1,"lon":2,"name":")"
                         + std::string(max_line_bytes, 'a') + "\"");
  auto dl = refuse(big);
  CHECK(dl.reason == reject_reason::line_too_long);
  CHECK(dl.payload.size() == over_long_payload_prefix);
}

TEST_CASE("the envelope with id and type and time and data") {
  CHECK(refuse(R"({"type":"site_created","data":{}})").reason
        == reject_reason::missing_field);
  CHECK(refuse(R"({"id":null,"type":"site_created","data":{}})").reason
        == reject_reason::missing_field);
  CHECK(refuse(R"({"id":7,"type":"site_created","data":{}})").reason
        == reject_reason::wrong_type);
  CHECK(refuse(R"({"id":"","type":"site_created","data":{}})").reason
        == reject_reason::out_of_range);
  std::string id128(128, 'i');
  std::string id129(129, 'i');
  accept(R"({"id":")" + id128
         + R"(","type":"site_deleted","data":{"site_id":"s"}})");
  CHECK(refuse(R"({"id":")" + id129
               + R"(","type":"site_deleted","data":{"site_id":"s"}})")
          .reason
        == reject_reason::out_of_range);
  // 128 characters, not bytes: 128 two-byte characters are fine.
  std::string wide;
  for (int i = 0; i < 128; ++i)
    wide += "\xc3\xa9";
  accept(R"({"id":")" + wide
         + R"(","type":"site_deleted","data":{"site_id":"s"}})");
  auto no_type = refuse(R"({"id":"e","data":{}})");
  CHECK(no_type.reason == reject_reason::missing_field);
  CHECK(no_type.event_id == "e"); // rejections name their event
  CHECK(refuse(R"({"id":"e","type":"site_exploded","data":{}})").reason
        == reject_reason::unknown_event_type);
  CHECK(refuse(R"({"id":"e","type":3,"data":{}})").reason
        == reject_reason::wrong_type);
  CHECK(refuse(R"({"id":"e","type":"site_deleted"})").reason
        == reject_reason::missing_field);
  CHECK(refuse(R"({"id":"e","type":"site_deleted","data":[]})").reason
        == reject_reason::wrong_type);
  CHECK(refuse(R"({"id":"e","type":"site_deleted","time":"yesterday","data":{"site_id":"s"}})")
          .reason
        == reject_reason::invalid_value);
  accept(R"({"id":"e","type":"site_deleted","time":"2026-01-02T03:04:05.123+01:00","data":{"site_id":"s"}})");
}

TEST_CASE("site fields are required and typed and in range") {
  CHECK(refuse(site_line(R"("lon":2)")).reason == reject_reason::missing_field);
  CHECK(refuse(site_line(R"("lat":1)")).reason == reject_reason::missing_field);
  CHECK(refuse(site_line(R"("lat":"1","lon":2)")).reason == reject_reason::wrong_type);
  CHECK(refuse(site_line(R"("lat":true,"lon":2)")).reason == reject_reason::wrong_type);
  CHECK(refuse(site_line(R"("lat":90.0001,"lon":2)")).reason
        == reject_reason::out_of_range);
  CHECK(refuse(site_line(R"("lat":-91,"lon":2)")).reason == reject_reason::out_of_range);
  CHECK(refuse(site_line(R"("lat":0,"lon":180.5)")).reason == reject_reason::out_of_range);
  accept(site_line(R"("lat":-90,"lon":-180)"));
  accept(site_line(R"("lat":90,"lon":180)"));
  CHECK(refuse(site_line(R"("lat":0,"lon":0,"name":")" + std::string(513, 'n') + "\""))
          .reason
        == reject_reason::out_of_range);
  accept(site_line(R"("lat":0,"lon":0,"name":")" + std::string(512, 'n') + "\""));
  CHECK(refuse(site_line(R"("lat":0,"lon":0,"version":1.5)")).reason
        == reject_reason::wrong_type);
  CHECK(refuse(site_line(R"("lat":0,"lon":0,"version":"2")")).reason
        == reject_reason::wrong_type);
  CHECK(refuse(site_line(R"("lat":0,"lon":0,"country":5)")).reason
        == reject_reason::wrong_type);
  CHECK(refuse(R"({"id":"s1","type":"site_created","data":{"lat":0,"lon":0}})")
          .reason
        == reject_reason::missing_field);
}

TEST_CASE("flow fields with enums and quantity and units and hours") {
  CHECK(refuse(flow_line(R"("direction":"sideways","resource":"heat","quantity":5,"unit":"MW","temperature_c":1)"))
          .reason
        == reject_reason::invalid_value);
  CHECK(refuse(flow_line(R"("resource":"heat","quantity":5,"unit":"MW","temperature_c":1)"))
          .reason
        == reject_reason::missing_field);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"steam","quantity":5,"unit":"MW","temperature_c":1)"))
          .reason
        == reject_reason::invalid_value);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"heat","quantity":0,"unit":"MW","temperature_c":1)"))
          .reason
        == reject_reason::out_of_range);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"heat","quantity":-3,"unit":"MW","temperature_c":1)"))
          .reason
        == reject_reason::out_of_range);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"heat","unit":"MW","temperature_c":1)"))
          .reason
        == reject_reason::missing_field);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"heat","quantity":5,"unit":"t/yr","temperature_c":1)"))
          .reason
        == reject_reason::unit_class_mismatch);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"water","quantity":5,"unit":"kW")"))
          .reason
        == reject_reason::unit_class_mismatch);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"heat","quantity":5,"unit":"horsepower","temperature_c":1)"))
          .reason
        == reject_reason::invalid_value);
  CHECK(refuse(flow_line(heat_ok + R"(,"operating_hours":0)")).reason
        == reject_reason::out_of_range);
  CHECK(refuse(flow_line(heat_ok + R"(,"operating_hours":8761)")).reason
        == reject_reason::out_of_range);
  accept(flow_line(heat_ok + R"(,"operating_hours":8760)"));
  CHECK(refuse(flow_line(heat_ok + R"(,"max_transport_km":0)")).reason
        == reject_reason::out_of_range);
  CHECK(refuse(flow_line(heat_ok + R"(,"hazardous":"yes")")).reason
        == reject_reason::wrong_type);
}

TEST_CASE("heat needs a temperature and a known medium") {
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"heat","quantity":5,"unit":"MW")"))
          .reason
        == reject_reason::missing_field);
  CHECK(refuse(flow_line(heat_ok + R"(,"medium":"lava")")).reason
        == reject_reason::invalid_value);
  for (auto m : {"hot_water", "steam", "cooling_water", "flue_gas", "air"})
    accept(flow_line(heat_ok + R"(,"medium":")" + m + "\""));
}

TEST_CASE("class-specific fields are checked only where they apply") {
  // A water flow with a heat medium and a bad EWC code: those fields mean
  // nothing for water, so they cannot reject it; well-formed ones stay.
  auto w = accept(flow_line(
    R"("direction":"supply","resource":"water","quantity":1,"unit":"m3/h","medium":"lava","ewc":"12","temperature_c":"hot","accepts_hazardous":true)"));
  CHECK_FALSE(w.flow_data.medium);
  CHECK_FALSE(w.flow_data.ewc);
  CHECK_FALSE(w.flow_data.temperature_c);
  CHECK(*w.flow_data.accepts_hazardous); // meaningless on a supply, but kept
  auto h = accept(flow_line(heat_ok + R"(,"ewc":"100202")"));
  CHECK(*h.flow_data.ewc == "100202"); // well-formed: kept
  // Where they apply they are checked as before.
  CHECK(refuse(flow_line(heat_ok + R"(,"medium":"lava")")).reason
        == reject_reason::invalid_value);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"heat","quantity":5,"unit":"MW","temperature_c":"hot")"))
          .reason
        == reject_reason::wrong_type);
}

TEST_CASE("material needs EWC codes in the right shape") {
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"material","quantity":1,"unit":"t/yr")"))
          .reason
        == reject_reason::missing_field);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"material","quantity":1,"unit":"t/yr","ewc":"10020")"))
          .reason
        == reject_reason::invalid_value);
  CHECK(refuse(flow_line(R"("direction":"supply","resource":"material","quantity":1,"unit":"t/yr","ewc":"10020x")"))
          .reason
        == reject_reason::invalid_value);
  CHECK(refuse(flow_line(R"("direction":"demand","resource":"material","quantity":1,"unit":"t/yr")"))
          .reason
        == reject_reason::missing_field);
  CHECK(refuse(flow_line(R"("direction":"demand","resource":"material","quantity":1,"unit":"t/yr","accepts_ewc":[])"))
          .reason
        == reject_reason::out_of_range);
  CHECK(refuse(flow_line(R"("direction":"demand","resource":"material","quantity":1,"unit":"t/yr","accepts_ewc":["100"])"))
          .reason
        == reject_reason::invalid_value);
  CHECK(refuse(flow_line(R"("direction":"demand","resource":"material","quantity":1,"unit":"t/yr","accepts_ewc":[1002])"))
          .reason
        == reject_reason::wrong_type);
  CHECK(refuse(flow_line(R"("direction":"demand","resource":"material","quantity":1,"unit":"t/yr","accepts_ewc":"1002")"))
          .reason
        == reject_reason::wrong_type);
}

TEST_CASE("RFC 3339 timestamps") {
  CHECK(is_rfc3339("2026-11-27T10:00:00Z"));
  CHECK(is_rfc3339("2026-11-27t10:00:00.000001-05:30"));
  CHECK_FALSE(is_rfc3339("2026-11-27"));
  CHECK_FALSE(is_rfc3339("2026-13-27T10:00:00Z"));
  CHECK_FALSE(is_rfc3339("2026-11-27T25:00:00Z"));
  CHECK(is_rfc3339("2026-11-27T10:00:00"));        // no offset: UTC
  CHECK(is_rfc3339("2026-11-27T10:00:00.123456")); // Python's isoformat()
  CHECK_FALSE(is_rfc3339("2026-11-27T10:00:00.Z"));
  CHECK_FALSE(is_rfc3339("2026-11-27T10:00:00+0100"));
}

TEST_CASE("UTF-8 helpers") {
  CHECK(utf8_length("abc") == 3);
  CHECK(utf8_length("\xc3\xa9t\xc3\xa9") == 3);
  CHECK(sanitize_utf8("ok") == "ok");
  CHECK(sanitize_utf8("a\xff" "b") == "a\xEF\xBF\xBD" "b");
}

TEST_CASE("U+0000 in any string is invalid_value, naming the field (v1.1)") {
  struct bad_line {
    std::string line;
    std::string field;
  };
  for (auto& c : std::vector<bad_line>{
         {R"({"id":"a\u0000b","type":"site_created","data":{"site_id":"s","lat":1,"lon":1}})",
          "id"},
         {site_line(R"("lat":1,"lon":1,"name":"x\u0000")"), "data.name"},
         {R"({"id":"e","type":"site_deleted","data":{"site_id":"\u0000"}})",
          "data.site_id"},
         {flow_line(R"("direction":"demand","resource":"material","quantity":1,"unit":"t/yr","accepts_ewc":["10\u000002"])"),
          "data.accepts_ewc[0]"},
       }) {
    auto dl = refuse(c.line);
    INFO(c.line);
    CHECK(dl.reason == reject_reason::invalid_value);
    CHECK_THAT(dl.detail, Catch::Contains(c.field + " contains U+0000"));
  }
}

TEST_CASE("a quantity whose annual value overflows is out_of_range (v1.1)") {
  auto dl = refuse(flow_line(
    R"("direction":"supply","resource":"heat","quantity":1e308,"unit":"MW","temperature_c":120)"));
  CHECK(dl.reason == reject_reason::out_of_range);
  CHECK_THAT(dl.detail, Catch::Contains("finite positive"));
  // The largest that fits still decodes, and its annual value is finite.
  auto ev = accept(flow_line(
    R"("direction":"supply","resource":"heat","quantity":1e300,"unit":"MW","temperature_c":120)"));
  CHECK(std::isfinite(ev.flow_data.annual_quantity));
}

TEST_CASE("an integer too large for its field is out_of_range, not "
          "malformed JSON (v1.1)") {
  auto lat = refuse(site_line(R"("lat":123456789012345678901234567890,"lon":1)"));
  CHECK(lat.reason == reject_reason::out_of_range);
  CHECK_THAT(lat.detail, Catch::Contains("data.lat"));
  // The payload is the line as given, not the widened one.
  CHECK_THAT(lat.payload, Catch::Contains("123456789012345678901234567890,"));
  auto version = refuse(
    site_line(R"("lat":1,"lon":1,"version":-123456789012345678901234567890)"));
  CHECK(version.reason == reject_reason::out_of_range);
  CHECK_THAT(version.detail, Catch::Contains("data.version"));
  // Digits inside a string are left alone; a real syntax error stays one.
  CHECK(refuse(R"({"id":"123456789012345678901234567890","type":"site_created","data":{"site_id":"s","lat":1e999,"lon":1}})")
          .reason
        == reject_reason::non_finite_number);
  CHECK(refuse(R"({"id":"e","lat":123456789012345678901234567890)").reason
        == reject_reason::malformed_json);
  // An accepted event keeps its original line.
  auto ok = accept(site_line(R"("lat":1,"lon":1,"country":"123456789012345678901234567890")"));
  CHECK(ok.site_data.country == std::string{"123456789012345678901234567890"});
}

TEST_CASE("a flow delete may name its site (v1.1)") {
  auto ev = accept(
    R"({"id":"d","type":"resource_flow_deleted","data":{"flow_id":"f","site_id":"s"}})");
  CHECK(ev.target_id == "f");
  CHECK(ev.flow_data.site_id == "s");
  auto bare = accept(
    R"({"id":"d","type":"resource_flow_deleted","data":{"flow_id":"f"}})");
  CHECK(bare.flow_data.site_id.empty());
  CHECK(refuse(R"({"id":"d","type":"resource_flow_deleted","data":{"flow_id":"f","site_id":""}})")
          .reason
        == reject_reason::out_of_range);
}
