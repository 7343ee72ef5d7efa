// The unit table: every accepted unit of every class converts to the
// canonical annual quantity as the contract's formulas say.

#include "messages/units.hpp"

#include <catch2/catch.hpp>

using namespace flowmatch;

namespace {

double annual(resource_class r, const char* unit, double q, double h = 8760) {
  auto v = to_annual_quantity(r, unit, q, h);
  REQUIRE(v);
  return *v;
}

} // namespace

TEST_CASE("heat converts to MWh/yr") {
  CHECK(annual(resource_class::heat, "MWh/yr", 123.5) == 123.5);
  CHECK(annual(resource_class::heat, "GWh/yr", 595.71) == 595.71 * 1000);
  // kW x h / 1000: 500 kW for 6000 h is 3000 MWh
  CHECK(annual(resource_class::heat, "kW", 500, 6000) == 3000);
  // MW x h: 2 MW all year is 17520 MWh
  CHECK(annual(resource_class::heat, "MW", 2) == 17520);
}

TEST_CASE("material and co2 convert to t/yr") {
  for (auto r : {resource_class::material, resource_class::co2}) {
    CHECK(annual(r, "t/yr", 42) == 42);
    CHECK(annual(r, "kt/yr", 1.5) == 1500);
    CHECK(annual(r, "t/h", 3, 1000) == 3000);     // t/h x h
    CHECK(annual(r, "kg/h", 250, 4000) == 1000);  // kg/h x h / 1000
  }
}

TEST_CASE("water converts to m3/yr") {
  CHECK(annual(resource_class::water, "m3/yr", 10) == 10);
  CHECK(annual(resource_class::water, "m3/h", 10, 100) == 1000);
  CHECK(annual(resource_class::water, "m3/d", 10) == 3650); // x 365, not hours
  CHECK(annual(resource_class::water, "m3/d", 10, 1) == 3650);
}

TEST_CASE("a unit of another class or of no class is refused") {
  CHECK_FALSE(to_annual_quantity(resource_class::heat, "t/yr", 1, 8760));
  CHECK_FALSE(to_annual_quantity(resource_class::water, "MW", 1, 8760));
  CHECK_FALSE(to_annual_quantity(resource_class::co2, "m3/h", 1, 8760));
  CHECK_FALSE(to_annual_quantity(resource_class::material, "kW", 1, 8760));
  CHECK_FALSE(to_annual_quantity(resource_class::heat, "mwh/yr", 1, 8760));
  CHECK(is_known_unit("kg/h"));
  CHECK_FALSE(is_known_unit("bbl/d"));
}

TEST_CASE("canonical units per class") {
  CHECK(canonical_unit(resource_class::heat) == "MWh/yr");
  CHECK(canonical_unit(resource_class::material) == "t/yr");
  CHECK(canonical_unit(resource_class::co2) == "t/yr");
  CHECK(canonical_unit(resource_class::water) == "m3/yr");
}
