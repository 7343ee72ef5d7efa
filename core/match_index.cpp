#include "core/match_index.hpp"

#include <algorithm>

namespace flowmatch {

namespace {

void drop_slot(std::vector<uint32_t>& slots, uint32_t slot) {
  auto i = std::find(slots.begin(), slots.end(), slot);
  if (i != slots.end()) {
    *i = slots.back();
    slots.pop_back();
  }
}

template <class Neighbour>
bool by_partner(const Neighbour& a, const Neighbour& b) {
  return a.partner < b.partner;
}

} // namespace

// -- neighbour lists ----------------------------------------------------------

match_index::neighbour&
match_index::neighbour_list::push_back(const neighbour& n) {
  if (size_ == capacity_) {
    auto capacity = std::max<uint32_t>(4, capacity_ * 2);
    auto grown = std::make_unique<neighbour[]>(capacity);
    std::copy(begin(), end(), grown.get());
    data_ = std::move(grown);
    capacity_ = capacity;
  }
  data_[size_] = n;
  return data_[size_++];
}

void match_index::neighbour_list::remove(uint32_t partner) {
  auto i = std::find_if(begin(), end(), [&](const neighbour& n) {
    return n.partner == partner;
  });
  if (i == end())
    return;
  *i = data_[size_ - 1];
  --size_;
}

match_index::neighbour& match_index::neighbour_list::of(uint32_t partner) {
  return *std::find_if(begin(), end(), [&](const neighbour& n) {
    return n.partner == partner;
  });
}

void match_index::neighbour_list::assign(const std::vector<neighbour>& from) {
  if (from.size() > capacity_ || from.empty()) {
    // Shrinks to nothing when empty: a flow that left frees its array.
    capacity_ = from.empty() ? 0
                             : std::max<uint32_t>(
                                 4, static_cast<uint32_t>(from.size()));
    data_ = capacity_ ? std::make_unique<neighbour[]>(capacity_) : nullptr;
  }
  std::copy(from.begin(), from.end(), begin());
  size_ = static_cast<uint32_t>(from.size());
}

// -- the index ----------------------------------------------------------------

match_index::match_index(match_settings settings,
                         caf::optional<resource_class> only)
  : settings_(std::move(settings)), only_(only) {
  static_assert(sizeof(flow_core) == 128, "a flow's core is two lines");
  for (auto r : {resource_class::heat, resource_class::water,
                 resource_class::material, resource_class::co2}) {
    // Grids of classes this partition never holds stay empty: a hash map
    // without cells and a row table.
    auto radius = d_max_bound_m(r, settings_);
    grids_.emplace_back(radius); // supplies
    grids_.emplace_back(radius); // demands
  }
}

flow_direction match_index::opposite(flow_direction d) {
  return d == flow_direction::supply ? flow_direction::demand
                                     : flow_direction::supply;
}

size_t match_index::grid_index(resource_class r, flow_direction d) {
  return static_cast<size_t>(r) * 2 + (d == flow_direction::supply ? 0 : 1);
}

spatial_grid& match_index::grid(resource_class r, flow_direction d) {
  return grids_[grid_index(r, d)];
}

const spatial_grid& match_index::grid(resource_class r,
                                      flow_direction d) const {
  return grids_[grid_index(r, d)];
}

void match_index::apply(const change& c, std::vector<match_change>& out) {
  switch (c.kind) {
    case change::site_upserted:
      upsert_site(c.site_data, out);
      break;
    case change::site_deleted: {
      auto i = sites_.find(c.id);
      if (i == sites_.end())
        break;
      // Its flows were deleted before it (cascade); drop any left anyway.
      std::vector<std::string> left;
      for (auto slot : i->second.flows)
        left.push_back(cores_[slot].flow_id);
      for (auto& id : left)
        remove_flow(id, out);
      sites_.erase(c.id); // by id: the last flow may have taken it along
      break;
    }
    case change::flow_upserted:
      if (only_ && c.flow_data.resource != *only_) {
        // Not this partition's class (any more): forget it if known.
        remove_flow(c.flow_data.flow_id, out);
        break;
      }
      upsert_flow(c.flow_data, out);
      break;
    case change::flow_deleted: {
      // A delete names the site the flow was at; one naming another site
      // than the indexed flow's is stale and ignored. (A flow's changes
      // come from one worker at a time, in order, so this is a guard.)
      auto known = slot_of(c.id);
      if (known != slot_table::none && !c.flow_data.site_id.empty()
          && cores_[known].site_id != c.flow_data.site_id)
        break;
      remove_flow(c.id, out);
      break;
    }
  }
}

void match_index::apply(const std::vector<change>& batch,
                        std::vector<match_change>& out) {
  // A software pipeline over the batch. At a million flows nearly every
  // read of a change misses the caches, and each depends on the one
  // before: the flow's table entry gives its slot, the slot its
  // neighbours, the neighbours their cores. So while one
  // change is applied, the changes after it are walked a stage each, every
  // stage loading what the next needs; by its turn a change finds its
  // memory in cache. Hints only: a slot found ahead may be stale by then
  // (a change before it can remove or add a flow), and `apply` looks it up
  // again.
  constexpr size_t depth = 4;
  auto n = batch.size();
  ahead_.assign(n, no_slot);
  for (size_t i = 0; i < n; ++i) {
    for (size_t step = 0; step < depth; ++step)
      if (auto j = i + depth - step; j < n)
        load_ahead(batch[j], ahead_[j], step);
    apply(batch[i], out);
  }
}

void match_index::load_ahead(const change& c, uint32_t& slot,
                             size_t step) const {
  if (step == 0) {
    if (auto id = flow_id_of(c))
      flows_.prefetch(slot_table::hash(*id));
    return;
  }
  if (step == 1) {
    auto id = flow_id_of(c);
    if (!id)
      return;
    // Unconfirmed: the id in the core is not read yet (that is what this
    // stage loads).
    slot = flows_.probe(slot_table::hash(*id));
    if (slot == slot_table::none)
      return;
    auto core = reinterpret_cast<const char*>(&cores_[slot]);
    __builtin_prefetch(core);
    __builtin_prefetch(core + 64);
    return;
  }
  if (slot >= cores_.size())
    return;
  const auto& neighbours = cores_[slot].neighbours;
  if (step == 2) {
    auto first = reinterpret_cast<const char*>(neighbours.begin());
    auto bytes = neighbours.size() * sizeof(neighbour);
    for (size_t at = 0; at < bytes; at += 64)
      __builtin_prefetch(first + at);
    return;
  }
  // Each neighbour's core: its terms, and its ids for a match change.
  for (auto& n : neighbours) {
    auto core = reinterpret_cast<const char*>(&cores_[n.partner]);
    __builtin_prefetch(core);
    __builtin_prefetch(core + 64);
  }
}

const std::string* match_index::flow_id_of(const change& c) {
  switch (c.kind) {
    case change::flow_upserted:
      return &c.flow_data.flow_id;
    case change::flow_deleted:
      return &c.id;
    default:
      return nullptr;
  }
}

void match_index::upsert_site(const site& s, std::vector<match_change>& out) {
  auto& info = site_named(s.site_id);
  bool moved = !info.placed || info.at.lat != s.lat || info.at.lon != s.lon;
  info.placed = true;
  info.at = position{s.lat, s.lon};
  if (!moved)
    return;
  // A moved site moves its flows (a new one places the flows that came
  // before it): every pair of each is recomputed.
  for (auto slot : info.flows) {
    unindex(slot);
    rest_[slot].at = info.at;
    index(slot);
  }
  for (auto slot : info.flows)
    rebuild(slot, {cores_[slot].terms, rest_[slot].taxonomy}, false, out);
}

match_index::site_info& match_index::site_named(const std::string& id) {
  auto [i, added] = sites_.try_emplace(id);
  if (added)
    i->second.number = next_site_number_++;
  return i->second;
}

void match_index::leave_site(const std::string& id, uint32_t slot) {
  auto site = sites_.find(id);
  if (site == sites_.end())
    return;
  drop_slot(site->second.flows, slot);
  if (!site->second.placed && site->second.flows.empty())
    sites_.erase(site); // only its flows had named it
}

uint32_t match_index::slot_of(const std::string& id, uint64_t hash) const {
  return flows_.find(hash,
                     [&](uint32_t slot) { return cores_[slot].flow_id == id; });
}

uint32_t match_index::slot_of(const std::string& id) const {
  return slot_of(id, slot_table::hash(id));
}

void match_index::upsert_flow(const resource_flow& f,
                              std::vector<match_change>& out) {
  uint32_t slot;
  bool moved_site = false;
  auto hash = slot_table::hash(f.flow_id);
  auto known = slot_of(f.flow_id, hash);
  if (known != slot_table::none
      && (cores_[known].terms.direction != f.direction
          || cores_[known].terms.resource != f.resource)) {
    // A flow that changes side or class starts over: its pairs are keyed
    // by its side.
    remove_flow(f.flow_id, out);
    known = slot_table::none;
  }
  if (known != slot_table::none) {
    slot = known;
    auto& core = cores_[slot];
    if (core.site_id == f.site_id && core.indexed) {
      // Same site, same side, same class: the position in the grid
      // stands; only the numbers change.
      auto terms_now = terms_of(f);
      bool material = f.resource == resource_class::material;
      auto taxonomy_now = material ? taxonomy_of(f) : flow_taxonomy{};
      if (terms_now == core.terms
          && (!material || taxonomy_now == rest_[slot].taxonomy))
        return; // nothing the rules read changed (a copy after a move)
      auto terms_before = core.terms;
      flow_taxonomy taxonomy_before;
      if (material) {
        taxonomy_before = std::move(rest_[slot].taxonomy);
        rest_[slot].taxonomy = std::move(taxonomy_now);
      }
      core.terms = terms_now;
      refresh(slot, {terms_before, taxonomy_before}, out);
      return;
    }
    unindex(slot);
    if (core.site_id != f.site_id) {
      moved_site = true;
      leave_site(core.site_id, slot);
    }
  } else {
    if (!free_slots_.empty()) {
      slot = free_slots_.back();
      free_slots_.pop_back();
    } else {
      slot = static_cast<uint32_t>(cores_.size());
      cores_.emplace_back();
      rest_.emplace_back();
    }
    flows_.insert(hash, slot);
  }
  auto& core = cores_[slot];
  auto terms_before = core.terms;
  auto taxonomy_before = std::move(rest_[slot].taxonomy);
  core.flow_id = f.flow_id;
  core.site_id = f.site_id;
  core.terms = terms_of(f);
  rest_[slot].taxonomy = f.resource == resource_class::material
                           ? taxonomy_of(f)
                           : flow_taxonomy{};
  auto& site = site_named(f.site_id);
  if (std::find(site.flows.begin(), site.flows.end(), slot) == site.flows.end())
    site.flows.push_back(slot);
  core.site = site.number;
  rest_[slot].at = site.at;
  if (site.placed)
    index(slot);
  rebuild(slot, {terms_before, taxonomy_before}, moved_site, out);
}

void match_index::remove_flow(const std::string& id,
                              std::vector<match_change>& out) {
  auto hash = slot_table::hash(id);
  auto slot = slot_of(id, hash);
  if (slot == slot_table::none)
    return;
  unindex(slot);
  // Unindexed, it leaves every neighbour.
  rebuild(slot, {cores_[slot].terms, rest_[slot].taxonomy}, false, out);
  leave_site(cores_[slot].site_id, slot);
  cores_[slot] = flow_core{};
  rest_[slot] = flow_rest{};
  free_slots_.push_back(slot);
  flows_.erase(hash, slot);
}

void match_index::index(uint32_t slot) {
  auto& t = cores_[slot].terms;
  auto& at = rest_[slot].at;
  grid(t.resource, t.direction).insert(at.lat, at.lon, slot);
  cores_[slot].indexed = true;
}

void match_index::unindex(uint32_t slot) {
  if (!cores_[slot].indexed)
    return;
  auto& t = cores_[slot].terms;
  auto& at = rest_[slot].at;
  grid(t.resource, t.direction).remove(at.lat, at.lon, slot);
  cores_[slot].indexed = false;
}

void match_index::refresh(uint32_t slot, flow_before was,
                          std::vector<match_change>& out) {
  // Neither this flow nor any neighbour moved since their distances were
  // computed (a move rebuilds), so no grid and no geodesic is needed:
  // only the rules again, pair by pair. The partner's entry for the pair
  // is only looked up when the pair starts or stops matching: at a
  // million flows it is one more miss.
  for (auto& n : cores_[slot].neighbours)
    reevaluate(slot, n, nullptr, was, n.distance_m, false, out);
}

void match_index::rebuild(uint32_t slot, flow_before was, bool ids_changed,
                          std::vector<match_change>& out) {
  const auto& me = cores_[slot];
  const auto& here = rest_[slot].at;
  bool supply = me.terms.direction == flow_direction::supply;
  // The neighbours the flow had, by partner, beside the ones it has now.
  before_.assign(me.neighbours.begin(), me.neighbours.end());
  std::sort(before_.begin(), before_.end(), by_partner<neighbour>);
  after_.clear();
  if (me.indexed) {
    // No pair beyond the class's d_max can match, so no flow beyond it is
    // a neighbour.
    auto radius = d_max_bound_m(me.terms.resource, settings_);
    candidates_.clear();
    grid(me.terms.resource, opposite(me.terms.direction))
      .query(here.lat, here.lon, radius,
             [this](uint32_t other) { candidates_.push_back(other); });
    for (auto other : candidates_)
      __builtin_prefetch(&cores_[other]);
    std::sort(candidates_.begin(), candidates_.end());
    for (auto other : candidates_) {
      if (cores_[other].site == me.site)
        continue; // two flows of one site never match
      const auto& there = rest_[other].at;
      ++distances_;
      if (auto d = supply ? distance_within(here, there, radius)
                          : distance_within(there, here, radius))
        after_.push_back(neighbour{other, false, *d});
    }
  }
  // Merge the two lists, both by partner: pairs that are gone leave both
  // flows (with their match); new ones join both; kept ones take the new
  // distance on both sides. Each pair that stays is evaluated.
  auto leave = [&](const neighbour& gone) {
    if (gone.matched) {
      emit_removal(slot, gone.partner, out);
      --matches_;
    }
    cores_[gone.partner].neighbours.remove(slot);
  };
  auto b = before_.begin();
  for (auto& n : after_) {
    for (; b != before_.end() && b->partner < n.partner; ++b)
      leave(*b);
    neighbour* theirs;
    double distance_before = 0;
    if (b != before_.end() && b->partner == n.partner) {
      n.matched = b->matched;
      distance_before = b->distance_m;
      theirs = &cores_[n.partner].neighbours.of(slot);
      theirs->distance_m = n.distance_m;
      ++b;
    } else {
      theirs = &cores_[n.partner].neighbours.push_back(
        neighbour{slot, false, n.distance_m});
    }
    reevaluate(slot, n, theirs, was, distance_before, ids_changed, out);
  }
  for (; b != before_.end(); ++b)
    leave(*b);
  cores_[slot].neighbours.assign(after_);
}

caf::optional<match_numbers>
match_index::pair_numbers(const flow_terms& terms,
                          const flow_taxonomy& taxonomy, uint32_t partner,
                          double distance_m) {
  ++evaluations_;
  // The taxonomies are only read for material.
  const auto& them = cores_[partner].terms;
  const auto& theirs = rest_[partner].taxonomy;
  if (terms.direction == flow_direction::supply)
    return evaluate_numbers(terms, taxonomy, them, theirs, settings_,
                            distance_m);
  return evaluate_numbers(them, theirs, terms, taxonomy, settings_,
                          distance_m);
}

void match_index::reevaluate(uint32_t slot, neighbour& n, neighbour* theirs,
                             flow_before was, double distance_before,
                             bool ids_changed,
                             std::vector<match_change>& out) {
  auto now = pair_numbers(cores_[slot].terms, rest_[slot].taxonomy,
                          n.partner, n.distance_m);
  auto flag_theirs = [&](bool matched) {
    (theirs ? *theirs : cores_[n.partner].neighbours.of(slot)).matched
      = matched;
  };
  if (!now) {
    if (n.matched) {
      emit_removal(slot, n.partner, out);
      n.matched = false;
      flag_theirs(false);
      --matches_;
    }
    return;
  }
  if (n.matched) {
    // It matched with the numbers of the terms before: the same numbers
    // now are no change to emit.
    if (!ids_changed
        && pair_numbers(was.terms, was.taxonomy, n.partner, distance_before)
             == now)
      return;
  } else {
    n.matched = true;
    flag_theirs(true);
    ++matches_;
  }
  bool supply = cores_[slot].terms.direction == flow_direction::supply;
  out.push_back(match_change{false, supply
                                      ? full_match(slot, n.partner, *now)
                                      : full_match(n.partner, slot, *now)});
}

void match_index::emit_removal(uint32_t slot, uint32_t partner,
                               std::vector<match_change>& out) const {
  bool supply = cores_[slot].terms.direction == flow_direction::supply;
  const auto& s = cores_[supply ? slot : partner];
  const auto& d = cores_[supply ? partner : slot];
  match_change c;
  c.removed = true;
  c.value.supply_flow_id = s.flow_id;
  c.value.demand_flow_id = d.flow_id;
  c.value.supply_site_id = s.site_id;
  c.value.demand_site_id = d.site_id;
  c.value.resource = cores_[slot].terms.resource;
  out.push_back(std::move(c));
}

match match_index::full_match(uint32_t supply, uint32_t demand,
                              const match_numbers& n) const {
  const auto& s = cores_[supply];
  const auto& d = cores_[demand];
  return make_match({s.flow_id, s.site_id, d.flow_id, d.site_id},
                    s.terms.resource, n);
}

std::vector<match> match_index::from_scratch() const {
  // Every supply against every demand through the rules: no grid, no
  // neighbours.
  std::vector<match> out;
  auto is = [&](size_t slot, flow_direction d) {
    return cores_[slot].indexed && cores_[slot].terms.direction == d;
  };
  for (uint32_t s = 0; s < cores_.size(); ++s) {
    if (!is(s, flow_direction::supply))
      continue;
    for (uint32_t d = 0; d < cores_.size(); ++d) {
      if (!is(d, flow_direction::demand)
          || cores_[s].site_id == cores_[d].site_id)
        continue;
      auto distance = distance_within(
        rest_[s].at, rest_[d].at,
        d_max_bound_m(cores_[s].terms.resource, settings_));
      if (!distance)
        continue;
      if (auto n = evaluate_numbers(cores_[s].terms, rest_[s].taxonomy,
                                    cores_[d].terms, rest_[d].taxonomy,
                                    settings_, *distance))
        out.push_back(full_match(s, d, *n));
    }
  }
  std::sort(out.begin(), out.end(), [](const match& a, const match& b) {
    return std::tie(a.supply_flow_id, a.demand_flow_id)
           < std::tie(b.supply_flow_id, b.demand_flow_id);
  });
  return out;
}

std::vector<match> match_index::matches() const {
  std::vector<match> out;
  out.reserve(match_count());
  for (uint32_t s = 0; s < cores_.size(); ++s) {
    if (!cores_[s].indexed
        || cores_[s].terms.direction != flow_direction::supply)
      continue;
    for (auto& n : cores_[s].neighbours)
      if (n.matched)
        if (auto numbers = evaluate_numbers(
              cores_[s].terms, rest_[s].taxonomy, cores_[n.partner].terms,
              rest_[n.partner].taxonomy, settings_, n.distance_m))
          out.push_back(full_match(s, n.partner, *numbers));
  }
  std::sort(out.begin(), out.end(), [](const match& a, const match& b) {
    return std::tie(a.supply_flow_id, a.demand_flow_id)
           < std::tie(b.supply_flow_id, b.demand_flow_id);
  });
  return out;
}

} // namespace flowmatch
