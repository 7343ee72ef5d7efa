#include "messages/units.hpp"

namespace flowmatch {

namespace {

/// One row of the contract's unit table:
/// annual = quantity [* hours when per_hour] * multiplier / divisor,
/// evaluated in that order, as the contract writes the formulas.
struct unit_row {
  resource_class cls;
  std::string_view unit;
  bool per_hour;
  double multiplier;
  double divisor;
};

constexpr unit_row unit_table[] = {
  {resource_class::heat, "MWh/yr", false, 1.0, 1.0},
  {resource_class::heat, "GWh/yr", false, 1000.0, 1.0},
  {resource_class::heat, "kW", true, 1.0, 1000.0},
  {resource_class::heat, "MW", true, 1.0, 1.0},
  {resource_class::material, "t/yr", false, 1.0, 1.0},
  {resource_class::material, "kt/yr", false, 1000.0, 1.0},
  {resource_class::material, "t/h", true, 1.0, 1.0},
  {resource_class::material, "kg/h", true, 1.0, 1000.0},
  {resource_class::co2, "t/yr", false, 1.0, 1.0},
  {resource_class::co2, "kt/yr", false, 1000.0, 1.0},
  {resource_class::co2, "t/h", true, 1.0, 1.0},
  {resource_class::co2, "kg/h", true, 1.0, 1000.0},
  {resource_class::water, "m3/yr", false, 1.0, 1.0},
  {resource_class::water, "m3/h", true, 1.0, 1.0},
  {resource_class::water, "m3/d", false, 365.0, 1.0},
};

} // namespace

std::string_view canonical_unit(resource_class r) {
  switch (r) {
    case resource_class::heat:
      return "MWh/yr";
    case resource_class::water:
      return "m3/yr";
    case resource_class::material:
    case resource_class::co2:
      return "t/yr";
  }
  return "";
}

caf::optional<double> to_annual_quantity(resource_class r,
                                         std::string_view unit,
                                         double quantity, double hours) {
  for (const auto& row : unit_table)
    if (row.cls == r && row.unit == unit) {
      double v = quantity;
      if (row.per_hour)
        v *= hours;
      if (row.multiplier != 1.0)
        v *= row.multiplier;
      if (row.divisor != 1.0)
        v /= row.divisor;
      return v;
    }
  return caf::none;
}

bool is_known_unit(std::string_view unit) {
  for (const auto& row : unit_table)
    if (row.unit == unit)
      return true;
  return false;
}

} // namespace flowmatch
