#pragma once

// The unit table of the event contract: which units belong to which resource
// class, and how each converts to the class's canonical annual quantity.

#include "messages/domain.hpp"

#include <caf/optional.hpp>

#include <string_view>

namespace flowmatch {

/// The canonical unit of a class: MWh/yr (heat), t/yr (material, co2) or
/// m3/yr (water).
std::string_view canonical_unit(resource_class r);

/// Converts `quantity` given in `unit` to the canonical annual quantity of
/// class `r`, using `hours` of operation per year for rates (kW, MW, t/h,
/// kg/h, m3/h). Returns none when `unit` does not belong to the class.
caf::optional<double> to_annual_quantity(resource_class r,
                                         std::string_view unit,
                                         double quantity, double hours);

/// True when `unit` belongs to any class (used to tell a unit of the wrong
/// class from an unknown unit in error messages).
bool is_known_unit(std::string_view unit);

} // namespace flowmatch
