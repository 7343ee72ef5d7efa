// The reader of a Redis stream through a consumer group (ingest.md):
// its own pending entries first, then entries that other consumers left
// idle past `claim_idle` (XAUTOCLAIM), then new entries (XREADGROUP >).
// Every entry it hands out stays pending in Redis until the driver says
// its outcome is durable (`acknowledge`, then XACK). Redis down or
// restarted: it waits with backoff and reconnects; nothing is lost, since
// whatever was handed out is still pending and is acknowledged later.
//
// Runs inside the detached ingest driver: its calls block.

#include "actors/line_reader.hpp"

#include "base/logging.hpp"
#include "messages/decoder.hpp"
#include "streams/redis.hpp"

#include <absl/container/flat_hash_map.h>
#include <absl/container/flat_hash_set.h>

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <thread>

namespace flowmatch {

namespace {

using clock_type = std::chrono::steady_clock;

/// XACK takes this many ids per command.
constexpr size_t ack_chunk = 512;

class redis_reader final : public line_reader {
public:
  redis_reader(const stream_settings& s, std::chrono::milliseconds poll)
    : s_(s), poll_(poll), name_("redis:" + s.stream) {
    std::string why;
    if (auto e = redis::parse_url(s.url, why))
      where_ = *e;
    else
      error_ = fmt::format("ingest.redis '{}': {}", s.url, why);
  }

  const std::string& name() const override {
    return name_;
  }

  const std::string& error() const override {
    return error_;
  }

  bool acknowledges() const override {
    return true;
  }

  void stop() override {
    // What was fetched is already pending for this consumer: hand it out
    // (it is in flight), then end. Nothing new is read.
    stopped_ = true;
  }

  size_t unacknowledged() const override {
    return in_flight_.size();
  }

  input_item next(bool wait) override {
    for (;;) {
      if (!error_.empty())
        return end_item();
      while (next_ < fetched_.size()) {
        auto& e = fetched_[next_++];
        if (!e.fresh && in_flight_ids_.contains(std::string{e.view.id}))
          continue; // already handed out by this process
        return hand_out(e);
      }
      if (stopped_)
        return end_item();
      if (!ensure_ready(wait))
        return nothing_yet();
      flush_acks();
      if (!ready_)
        continue;
      if (!fetch(wait)) {
        if (stopped_)
          return end_item();
        return nothing_yet();
      }
    }
  }

  size_t acknowledge(std::vector<uint64_t> positions) override {
    for (auto line : positions) {
      auto i = in_flight_.find(line);
      if (i == in_flight_.end())
        continue;
      ack_backlog_.push_back(std::move(i->second));
      in_flight_.erase(i);
    }
    auto before = ack_backlog_.size();
    if (ready_ || ensure_ready(false))
      flush_acks();
    return before - ack_backlog_.size();
  }

  std::vector<status_metric> counters() override {
    std::vector<status_metric> out{
      {"entries_read", true, static_cast<double>(read_)},
      {"entries_redelivered", true, static_cast<double>(redelivered_)},
      {"entries_claimed", true, static_cast<double>(claimed_)},
      {"entries_acknowledged", true, static_cast<double>(acked_)},
      {"entries_unacknowledged", false,
       static_cast<double>(in_flight_.size())},
      {"redis_reconnects", true, static_cast<double>(reconnects_)},
      {"redis_connected", false, ready_ ? 1.0 : 0.0},
    };
    if (ready_)
      group_info(out);
    return out;
  }

private:
  /// An entry fetched and not yet handed out.
  struct fetched_entry {
    redis::entry_view view;
    long long deliveries = 1;
    /// Read with `>`: cannot be in flight already.
    bool fresh = true;
  };

  input_item end_item() const {
    input_item x;
    x.kind = input_item::end;
    x.origin = event_origin{name_, seq_};
    return x;
  }

  input_item nothing_yet() const {
    input_item x;
    x.kind = input_item::nothing_yet;
    x.origin = event_origin{name_, seq_};
    return x;
  }

  input_item hand_out(const fetched_entry& e) {
    ++read_;
    std::string id{e.view.id};
    in_flight_ids_.insert(id);
    input_item x;
    x.origin = event_origin{name_, ++seq_, id};
    in_flight_.emplace(seq_, std::move(id));
    auto payload = e.view.event.value_or(std::string_view{});
    // The decoder reads up to decoder_padding bytes past the line; of an
    // over-long entry only the prefix for its dead letter is copied.
    auto keep = payload.size() > max_line_bytes
                  ? std::min(payload.size(), over_long_payload_prefix)
                  : payload.size();
    line_.assign(payload.data(), keep);
    line_.resize(keep + decoder_padding, '\0');
    x.text = std::string_view{line_.data(), keep};
    x.bytes = payload.size();
    if (e.deliveries > static_cast<long long>(s_.delivery_limit)) {
      x.kind = input_item::refused;
      x.reason = reject_reason::poison_event;
      detail_ = fmt::format("stream entry {} was delivered {} times, more "
                            "than ingest.delivery-limit ({}): taken for "
                            "poison",
                            x.origin.entry, e.deliveries, s_.delivery_limit);
      x.detail = detail_;
      return x;
    }
    if (!e.view.event) {
      x.kind = input_item::refused;
      x.reason = reject_reason::missing_field;
      detail_ = fmt::format("stream entry {} has no field named event",
                            x.origin.entry);
      x.detail = detail_;
      return x;
    }
    if (payload.size() > max_line_bytes) {
      x.kind = input_item::too_long;
      return x;
    }
    x.kind = input_item::line;
    return x;
  }

  // -- connection --------------------------------------------------------

  /// Connected, with the group in place; else waits out (with `wait`) or
  /// schedules the next attempt.
  bool ensure_ready(bool wait) {
    if (ready_)
      return true;
    auto now = clock_type::now();
    if (now < retry_at_) {
      if (wait)
        std::this_thread::sleep_for(
          std::min<clock_type::duration>(poll_, retry_at_ - now));
      return false;
    }
    // A blocking read waits up to the poll interval; the socket a little
    // longer.
    conn_ = redis::connection::open(where_, s_.connect_timeout,
                                    poll_ + std::chrono::seconds{2});
    if (conn_.broken()) {
      lost(conn_.error());
      return false;
    }
    auto r = conn_.command(
      {"XGROUP", "CREATE", s_.stream, s_.group, "0", "MKSTREAM"});
    if (!r) {
      lost(conn_.error());
      return false;
    }
    if (r.view().is_error()
        && r.view().text().substr(0, 9) != "BUSYGROUP") {
      auto text = r.view().text();
      auto permanent = [&](std::string_view code) {
        return text.substr(0, code.size()) == code;
      };
      // The key holds something else than a stream, or the server refuses
      // us: no retry mends that. Anything else (LOADING after a restart,
      // say) passes.
      if (permanent("WRONGTYPE") || permanent("NOAUTH")
          || permanent("NOPERM")) {
        error_ = fmt::format("cannot create consumer group {} on {}: {}",
                             s_.group, s_.stream, text);
        log()->error("{} {}", name_, error_);
        return false;
      }
      lost(fmt::format("XGROUP CREATE: {}", text));
      return false;
    }
    if (attempts_ > 0)
      log()->warn("{} reconnected to {} after {} failed attempts",
                  name_, where_.url(), attempts_);
    else
      log()->info("{} consuming {} as {} of group {}", name_, where_.url(),
                  s_.consumer, s_.group);
    if (ever_ready_)
      ++reconnects_;
    ever_ready_ = true;
    ready_ = true;
    attempts_ = 0;
    backoff_ = std::chrono::milliseconds{100};
    // Entries this consumer holds but this process never saw (a read whose
    // answer the outage swallowed; at start: everything of the last run)
    // come first.
    phase_ = phase::own_pending;
    pending_after_.clear();
    return true;
  }

  void lost(const std::string& why) {
    ready_ = false;
    fetched_.clear();
    next_ = 0;
    held_.reset();
    if (attempts_ == 0 || (attempts_ & (attempts_ - 1)) == 0)
      log()->warn("{} Redis at {} unreachable ({}); retrying in {} ms "
                  "(attempt {})",
                  name_, where_.url(), why, backoff_.count(), attempts_ + 1);
    ++attempts_;
    retry_at_ = clock_type::now() + backoff_;
    backoff_ = std::min(backoff_ * 2, s_.max_backoff);
  }

  // -- reading -----------------------------------------------------------

  /// Takes a reply for the entries it holds; false when the connection
  /// failed or the reply was malformed (then the connection is dropped).
  bool keep(redis::reply r, const char* what) {
    if (!r) {
      lost(conn_.error());
      return false;
    }
    if (r.view().is_error()) {
      lost(fmt::format("{}: {}", what, r.view().text()));
      return false;
    }
    held_ = std::make_shared<redis::reply>(std::move(r));
    return true;
  }

  /// Fetches the next entries; false when there are none now.
  bool fetch(bool wait) {
    if (!ready_)
      return false;
    fetched_.clear();
    next_ = 0;
    if (phase_ == phase::own_pending)
      return fetch_own_pending() || fetch(wait);
    if (phase_ == phase::claiming
        || (phase_ == phase::fresh && clock_type::now() >= next_claim_))
      return fetch_claimed() || fetch(wait);
    return fetch_fresh(wait);
  }

  /// Own pending entries not in flight, oldest first, through XPENDING and
  /// XCLAIM (which counts a delivery); the phase ends when none are left.
  bool fetch_own_pending() {
    auto start = pending_after_.empty() ? std::string{"-"}
                                        : "(" + pending_after_;
    auto count = std::to_string(s_.read_count);
    auto r = conn_.command({"XPENDING", s_.stream, s_.group, start, "+",
                            count, s_.consumer});
    std::vector<redis::pending_row> rows;
    std::string why;
    if (!r) {
      lost(conn_.error());
      return false;
    }
    if (r.view().is_error() || !redis::parse_pending(r.view(), rows, why)) {
      lost(why.empty() ? std::string{r.view().text()} : why);
      return false;
    }
    if (rows.empty()) {
      phase_ = phase::claiming;
      claim_cursor_ = "0-0";
      return false;
    }
    pending_after_ = std::string{rows.back().id};
    std::vector<std::string> ids;
    absl::flat_hash_map<std::string, long long> deliveries;
    for (auto& row : rows)
      if (!in_flight_ids_.contains(std::string{row.id})) {
        ids.emplace_back(row.id);
        deliveries[ids.back()] = row.deliveries + 1;
      }
    if (ids.empty())
      return false;
    return claim(ids, deliveries, "0", redelivered_);
  }

  /// Entries idle past claim_idle with any consumer (XAUTOCLAIM JUSTID,
  /// which does not count a delivery), those not in flight here taken with
  /// XCLAIM (which does).
  bool fetch_claimed() {
    phase_ = phase::claiming;
    // Before the first new entry, a lease holder takes everything pending
    // (stream_settings::claim_all_at_start): order before patience.
    auto idle = !caught_up_ && s_.claim_all_at_start
                  ? std::string{"0"}
                  : std::to_string(s_.claim_idle.count());
    auto count = std::to_string(s_.read_count);
    auto r = conn_.command({"XAUTOCLAIM", s_.stream, s_.group, s_.consumer,
                            idle, claim_cursor_, "COUNT", count, "JUSTID"});
    if (!r) {
      lost(conn_.error());
      return false;
    }
    auto v = r.view();
    if (v.is_error() || !v.is_array() || v.size() < 2 || !v[0].is_string()) {
      lost(fmt::format("XAUTOCLAIM: unexpected answer {}", v.text()));
      return false;
    }
    claim_cursor_ = std::string{v[0].text()};
    if (claim_cursor_ == "0-0") {
      if (!caught_up_) {
        caught_up_ = true;
        log()->info("{} pending entries taken ({} own, {} claimed); "
                    "reading new entries",
                    name_, redelivered_, claimed_);
      }
      phase_ = phase::fresh;
      next_claim_ = clock_type::now() + std::max(s_.claim_idle / 2,
                                                 std::chrono::milliseconds{100});
    }
    std::vector<std::string> ids;
    for (size_t i = 0; i < v[1].size(); ++i)
      if (!in_flight_ids_.contains(std::string{v[1][i].text()}))
        ids.emplace_back(v[1][i].text());
    if (ids.empty())
      return false;
    // The delivery counts before the claim, to add this one to.
    absl::flat_hash_map<std::string, long long> deliveries;
    auto lo = *std::min_element(ids.begin(), ids.end(), redis::id_less);
    auto hi = *std::max_element(ids.begin(), ids.end(), redis::id_less);
    auto p = conn_.command({"XPENDING", s_.stream, s_.group, lo, hi,
                            std::to_string(ids.size() * 4 + 16)});
    std::vector<redis::pending_row> rows;
    std::string why;
    if (p && redis::parse_pending(p.view(), rows, why))
      for (auto& row : rows)
        deliveries[std::string{row.id}] = row.deliveries + 1;
    return claim(ids, deliveries, "0", claimed_);
  }

  /// XCLAIM of `ids` for this consumer; the entries become the fetched
  /// ones.
  bool claim(const std::vector<std::string>& ids,
             const absl::flat_hash_map<std::string, long long>& deliveries,
             const char* min_idle, uint64_t& counter) {
    std::vector<std::string_view> args{"XCLAIM", s_.stream, s_.group,
                                       s_.consumer, min_idle};
    for (auto& id : ids)
      args.push_back(id);
    if (!keep(conn_.command(args), "XCLAIM"))
      return false;
    std::vector<redis::entry_view> entries;
    std::string why;
    if (!redis::parse_entries(held_->view(), entries, why)) {
      lost(why);
      return false;
    }
    if (entries.size() < ids.size())
      log()->warn("{} {} pending entries were deleted from the stream "
                  "before they were processed (trimmed?)",
                  name_, ids.size() - entries.size());
    for (auto& e : entries) {
      auto d = deliveries.find(std::string{e.id});
      fetched_.push_back({e, d == deliveries.end() ? 2 : d->second, false});
    }
    counter += entries.size();
    return !fetched_.empty();
  }

  /// New entries (`>`), waiting up to the poll interval with `wait`.
  bool fetch_fresh(bool wait) {
    auto count = std::to_string(s_.read_count);
    auto block = std::to_string(poll_.count());
    std::vector<std::string_view> args{"XREADGROUP", "GROUP", s_.group,
                                       s_.consumer, "COUNT", count};
    if (wait) {
      args.push_back("BLOCK");
      args.push_back(block);
    }
    args.push_back("STREAMS");
    args.push_back(s_.stream);
    args.push_back(">");
    if (!keep(conn_.command(args), "XREADGROUP"))
      return false;
    std::vector<redis::entry_view> entries;
    std::string why;
    if (!redis::parse_read_reply(held_->view(), entries, why)) {
      lost(why);
      return false;
    }
    for (auto& e : entries)
      fetched_.push_back({e, 1, true});
    if (fetched_.empty() && s_.until_caught_up) {
      log()->info("{} caught up (ingest.until-caught-up): ending the input",
                  name_);
      stopped_ = true;
    }
    return !fetched_.empty();
  }

  // -- acknowledging -----------------------------------------------------

  void flush_acks() {
    while (ready_ && !ack_backlog_.empty()) {
      auto n = std::min(ack_chunk, ack_backlog_.size());
      std::vector<std::string_view> args{"XACK", s_.stream, s_.group};
      for (size_t i = 0; i < n; ++i)
        args.push_back(ack_backlog_[i]);
      auto r = conn_.command(args);
      if (!r || r.view().is_error()) {
        lost(r ? std::string{r.view().text()} : conn_.error());
        return;
      }
      for (size_t i = 0; i < n; ++i)
        in_flight_ids_.erase(ack_backlog_[i]);
      ack_backlog_.erase(ack_backlog_.begin(),
                         ack_backlog_.begin() + static_cast<ptrdiff_t>(n));
      acked_ += n;
    }
  }

  /// The group's pending and lag (XINFO GROUPS), for operators.
  void group_info(std::vector<status_metric>& out) {
    auto r = conn_.command({"XINFO", "GROUPS", s_.stream});
    if (!r) {
      lost(conn_.error());
      return;
    }
    if (auto row = redis::find_group(r.view(), s_.group)) {
      out.push_back(
        {"stream_group_pending", false, static_cast<double>(row->pending)});
      if (auto lag = redis::checked_lag(conn_, s_.stream, *row); lag >= 0)
        out.push_back({"stream_group_lag", false, static_cast<double>(lag)});
    }
  }

  stream_settings s_;
  std::chrono::milliseconds poll_;
  std::string name_;
  std::string error_;
  redis::endpoint where_;
  redis::connection conn_;
  bool ready_ = false;
  bool ever_ready_ = false;
  bool stopped_ = false;
  /// Logged once: the pending entries are taken, new ones come next.
  bool caught_up_ = false;
  uint64_t attempts_ = 0;
  std::chrono::milliseconds backoff_{100};
  clock_type::time_point retry_at_{};

  enum class phase { own_pending, claiming, fresh };
  phase phase_ = phase::own_pending;
  std::string pending_after_;
  std::string claim_cursor_ = "0-0";
  clock_type::time_point next_claim_{};

  /// The reply the fetched entries point into.
  std::shared_ptr<redis::reply> held_;
  std::vector<fetched_entry> fetched_;
  size_t next_ = 0;
  std::string line_;
  std::string detail_;

  /// Entries handed out and not acknowledged: by position, and their ids.
  uint64_t seq_ = 0;
  absl::flat_hash_map<uint64_t, std::string> in_flight_;
  absl::flat_hash_set<std::string> in_flight_ids_;
  /// Settled entries whose XACK has not succeeded yet.
  std::vector<std::string> ack_backlog_;

  uint64_t read_ = 0;
  uint64_t redelivered_ = 0;
  uint64_t claimed_ = 0;
  uint64_t acked_ = 0;
  uint64_t reconnects_ = 0;
};

} // namespace

std::unique_ptr<line_reader>
open_stream_reader(const stream_settings& settings,
                   std::chrono::milliseconds poll_interval) {
  return std::make_unique<redis_reader>(settings, poll_interval);
}

} // namespace flowmatch
