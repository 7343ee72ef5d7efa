#include "actors/ingest_source.hpp"

#include "base/logging.hpp"

#include <caf/all.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace flowmatch {

namespace {

using source_ptr = source_actor::stateful_pointer<ingest_source_state>;

bool all_blank(std::string_view text) {
  return std::all_of(text.begin(), text.end(),
                     [](char c) { return c == ' ' || c == '\t' || c == '\r'; });
}

/// The item at `position` has a durable outcome (or will have once the
/// dead letters are flushed).
void settle(source_ptr self, uint64_t position) {
  if (self->state.acks)
    self->state.settled.push_back(position);
}

void acknowledge_settled(source_ptr self, bool now = false);

void reject(source_ptr self, dead_letter dl) {
  auto& st = self->state;
  st.stats.count_rejection(dl.reason);
  st.rejects.push_back(std::move(dl));
}

/// Decodes one line; a valid event not seen before joins the batch.
void take_line(source_ptr self, const input_item& item) {
  auto& st = self->state;
  ++st.stats.lines;
  st.bytes += item.text.size();
  if (all_blank(item.text)) {
    ++st.stats.blank_lines; // they separate nothing and carry nothing
    settle(self, item.origin.line);
    return;
  }
  // The reader leaves decoder_padding readable bytes after the line.
  auto result = st.decoder.decode(item.text, item.origin, true);
  if (auto* ev = std::get_if<event>(&result)) {
    ++st.stats.events;
    if (st.settings.require_site_id
        && ev->type == event_type::resource_flow_deleted
        && ev->flow_data.site_id.empty()) {
      dead_letter dl;
      dl.origin = item.origin;
      dl.event_id = ev->id;
      dl.reason = reject_reason::missing_field;
      dl.detail = "data.site_id is required in a resource_flow_deleted on a "
                  "partitioned stream (ingest.md: it is the routing key)";
      dl.payload = std::move(ev->raw);
      reject(self, std::move(dl));
      settle(self, item.origin.line);
      return;
    }
    if (!st.seen.admit(ev->id, st.now_ms)) {
      // Its first copy is durable or still pending in the input itself.
      ++st.stats.duplicates;
      settle(self, item.origin.line);
      return;
    }
    if (st.acks)
      st.unsettled.emplace(ev->id, item.origin.line);
    st.batch.push_back(std::move(*ev));
    return;
  }
  auto& dl = std::get<dead_letter>(result);
  if (item.cut)
    // The producer was likely still writing it: say so, so an operator
    // knows to send it again rather than fix it.
    dl.detail = "the last line was cut short: intake stopped before its "
                "line end arrived (" + dl.detail + ")";
  reject(self, std::move(dl));
  settle(self, item.origin.line);
}

void take_too_long(source_ptr self, const input_item& item) {
  ++self->state.stats.lines;
  dead_letter dl;
  dl.origin = item.origin;
  dl.reason = reject_reason::line_too_long;
  dl.detail = "line has " + std::to_string(item.bytes) + " bytes, at most "
              + std::to_string(max_line_bytes) + " allowed; kept the first "
              + std::to_string(item.text.size());
  dl.payload = std::string{item.text};
  reject(self, std::move(dl));
  settle(self, item.origin.line);
}

/// An entry the transport rejected itself (no event field, poison).
void take_refused(source_ptr self, const input_item& item) {
  ++self->state.stats.lines;
  dead_letter dl;
  dl.origin = item.origin;
  dl.reason = item.reason;
  dl.detail = std::string{item.detail};
  dl.payload = std::string{item.text};
  // Name the event when the payload says which it is.
  auto decoded = self->state.decoder.decode(item.text, item.origin, true);
  if (auto* ev = std::get_if<event>(&decoded))
    dl.event_id = ev->id;
  reject(self, std::move(dl));
  settle(self, item.origin.line);
}

/// Acknowledges what is settled: first the dead-letter sink stores
/// everything sent to it so far (a letter must not be lost with its
/// entry), then the reader acknowledges. One round at a time, and (unless
/// `now`: the input is idle, or a drain waits) only once a batch's worth
/// is settled: fewer round trips to the sink and to the transport.
void acknowledge_settled(source_ptr self, bool now) {
  auto& st = self->state;
  if (!st.acks || st.acknowledging)
    return;
  if (!now && st.drains.empty() && st.settled.size() < st.settings.batch_size)
    return;
  if (st.settled.empty()) {
    for (auto& rp : st.drains)
      rp.deliver(static_cast<uint64_t>(st.reader->unacknowledged()));
    st.drains.clear();
    return;
  }
  st.acknowledging = true;
  auto positions = std::make_shared<std::vector<uint64_t>>();
  positions->swap(st.settled);
  auto ack = [self, positions] {
    auto& state = self->state;
    state.acknowledged += state.reader->acknowledge(std::move(*positions));
    state.acknowledging = false;
    acknowledge_settled(self, false);
  };
  if (!st.dead_letters) {
    ack();
    return;
  }
  self->request(st.dead_letters, st.settings.flush_timeout,
                caf::flush_atom::value)
    .then([ack](uint64_t) { ack(); },
          [self](caf::error& err) {
            log()->critical("{} the dead-letter sink did not store its "
                            "letters ({}); nothing more is acknowledged",
                            self->name(), self->system().render(err));
            self->quit(err);
          });
}

void flush_rejects(source_ptr self) {
  auto& st = self->state;
  if (st.rejects.empty())
    return;
  if (st.dead_letters)
    self->send(st.dead_letters, std::move(st.rejects));
  st.rejects.clear();
}

void maybe_report(source_ptr self) {
  auto& st = self->state;
  if (!st.input_done || st.outstanding > 0 || st.reported)
    return;
  flush_rejects(self);
  st.reported = true;
  uint64_t rejected = 0;
  for (auto n : st.stats.rejected)
    rejected += n;
  log()->info("{} {}: {} lines, {} events, {} rejected", self->name(),
              st.reader->name(), st.stats.lines, st.stats.events, rejected);
  self->send(st.listener, eof_atom::value, st.stats);
  // A stream's entries are acknowledged after the drain: stay for it.
  if (!st.acks)
    self->quit();
}

void schedule_read(source_ptr self);

void send_batch(source_ptr self) {
  auto& st = self->state;
  flush_rejects(self);
  if (st.batch.empty())
    return;
  ++st.outstanding;
  st.sent_at.push_back(std::chrono::steady_clock::now());
  std::vector<event> batch;
  batch.swap(st.batch);
  st.batch.reserve(st.settings.batch_size);
  // Waiting here is the backpressure; it lasts as long as the slowest
  // stage needs (a database outage), up to the stall limit.
  self->request(st.dispatcher, st.settings.admission_timeout,
                ingest_atom::value, std::move(batch))
    .then(
      [self](caf::ok_atom) {
        --self->state.outstanding;
        self->state.sent_at.pop_front(); // admitted in the order sent
        schedule_read(self);
        acknowledge_settled(self);
        maybe_report(self);
      },
      [self](caf::error& err) {
        log()->critical("{} the dispatcher refused a batch: {}",
                        self->name(), self->system().render(err));
        self->quit(err);
      });
}

/// The reader has nothing more: send what is left and report once it is
/// admitted.
void finish_input(source_ptr self) {
  auto& st = self->state;
  if (st.input_done)
    return;
  if (!st.reader->error().empty()) {
    st.stats.read_error = st.reader->error();
    log()->error("{} {}", self->name(), st.stats.read_error);
  }
  send_batch(self);
  st.input_done = true;
  maybe_report(self);
}

void schedule_read(source_ptr self) {
  auto& st = self->state;
  if (st.read_scheduled || st.input_done
      || st.outstanding >= st.settings.max_outstanding)
    return;
  st.read_scheduled = true;
  self->send(self, read_atom::value);
}

int64_t wall_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

/// Takes items from the reader until the credit for batches is used up,
/// the reader has nothing yet, or the input ends. After a stop, everything
/// the reader still yields is taken at once.
void on_read(source_ptr self) {
  auto& st = self->state;
  st.read_scheduled = false;
  st.now_ms = wall_clock_ms();
  auto round = token_bucket::clock::now();
  while (!st.input_done
         && (st.stopping || st.outstanding < st.settings.max_outstanding)) {
    if (st.batch.size() >= st.settings.batch_size) {
      send_batch(self);
      continue;
    }
    if (st.bucket.limited() && !st.stopping
        && st.bucket.available(round) < 1) {
      // Over the rate: send what is read and read on once a batch's worth
      // of tokens (at most the burst) is back; the backlog stays in the
      // input. A stop is not held back.
      send_batch(self);
      ++st.rate_waits;
      st.read_scheduled = true;
      self->delayed_send(self,
                         st.bucket.wait_for(
                           static_cast<double>(st.settings.batch_size), round),
                         read_atom::value);
      return;
    }
    // Wait for input only when there is nothing to send meanwhile; with a
    // partial batch, send it rather than sit on it.
    auto item = st.reader->next(st.batch.empty() && !st.stopping);
    switch (item.kind) {
      case input_item::line:
        st.bucket.take(1, round);
        take_line(self, item);
        break;
      case input_item::too_long:
        st.bucket.take(1, round);
        take_too_long(self, item);
        break;
      case input_item::refused:
        st.bucket.take(1, round);
        take_refused(self, item);
        break;
      case input_item::nothing_yet:
        send_batch(self);
        acknowledge_settled(self, true);
        schedule_read(self);
        return;
      case input_item::end:
        finish_input(self);
        return;
    }
  }
  schedule_read(self);
}

/// These admitted events have a durable outcome.
void settle_events(source_ptr self, const std::vector<std::string>& ids) {
  auto& st = self->state;
  if (!st.acks)
    return;
  for (auto& id : ids)
    if (auto i = st.unsettled.find(id); i != st.unsettled.end()) {
      st.settled.push_back(i->second);
      st.unsettled.erase(i);
    }
  acknowledge_settled(self);
}

void on_stop(source_ptr self) {
  auto& st = self->state;
  if (st.stopping || st.input_done)
    return;
  st.stopping = true;
  st.reader->stop();
  log()->info("{} stopping intake of {} after {} lines", self->name(),
              st.reader->name(), st.stats.lines);
  on_read(self);
}

} // namespace

source_actor::behavior_type
ingest_source(source_actor::stateful_pointer<ingest_source_state> self,
              ingest_settings settings, admission_actor dispatcher,
              source_listener_actor listener,
              dead_letter_sink_actor dead_letters,
              commit_coordinator_actor coordinator,
              processed_ids already_applied) {
  auto& st = self->state;
  st.settings = std::move(settings);
  st.reader = open_reader(st.settings.reader);
  st.acks = st.reader->acknowledges();
  if (st.acks && coordinator)
    // Before the first batch leaves: no settled batch can be missed.
    self->send(coordinator, subscribe_atom::value,
               settled_sink_actor{self});
  st.seen = event_id_window{st.settings.dedup_retention.count()};
  st.bucket = token_bucket{
    st.settings.max_rate,
    static_cast<double>(st.settings.burst > 0 ? st.settings.burst
                                              : st.settings.batch_size)};
  st.now_ms = wall_clock_ms();
  for (size_t i = 0; i < already_applied.ids.size(); ++i)
    st.seen.remember(already_applied.ids[i],
                     i < already_applied.applied_ms.size()
                       ? already_applied.applied_ms[i]
                       : st.now_ms);
  // Old ids leave the window one shard per tick: a full sweep takes 64
  // ticks, so an id outlives its retention by at most that much.
  auto sweep = std::clamp(st.settings.dedup_retention
                            / static_cast<int>(event_id_window::shard_count),
                          std::chrono::milliseconds{1},
                          std::chrono::milliseconds{1000});
  st.dispatcher = std::move(dispatcher);
  st.listener = std::move(listener);
  st.dead_letters = std::move(dead_letters);
  st.batch.reserve(st.settings.batch_size);
  schedule_read(self);
  log()->info("{} reading {}", self->name(), st.reader->name());
  self->delayed_send(self, sweep, expire_atom::value);
  return {
    [self](read_atom) { on_read(self); },
    [self](stop_atom) { on_stop(self); },
    [self](forget_atom, const std::vector<std::string>& ids) {
      // Dead-lettered after admission: a corrected resend may apply, and
      // the entry is settled once the letter is flushed.
      for (auto& id : ids)
        self->state.seen.forget(id);
      settle_events(self, ids);
    },
    [self](settled_atom, const std::vector<std::string>& ids) {
      settle_events(self, ids);
    },
    [self](drain_atom) -> caf::result<uint64_t> {
      auto rp = self->make_response_promise<uint64_t>();
      self->state.drains.push_back(rp);
      acknowledge_settled(self);
      return rp;
    },
    [self, sweep](expire_atom) {
      self->state.seen.expire_next_shard(wall_clock_ms());
      self->delayed_send(self, sweep, expire_atom::value);
    },
    [self](status_atom) {
      auto& now = self->state;
      uint64_t rejected = 0;
      for (auto n : now.stats.rejected)
        rejected += n;
      actor_status s;
      s.actor = std::string{self->name()} + " " + now.reader->name();
      s.counter("lines_read", static_cast<double>(now.stats.lines))
        .counter("events_decoded", static_cast<double>(now.stats.events))
        .counter("duplicates", static_cast<double>(now.stats.duplicates))
        .counter("rejected", static_cast<double>(rejected))
        .counter("rate_limit_pauses", static_cast<double>(now.rate_waits))
        .counter("input_bytes", static_cast<double>(now.bytes))
        .counter("events{outcome=duplicate}",
                 static_cast<double>(now.stats.duplicates))
        .counter("events{outcome=dead_lettered}", static_cast<double>(rejected))
        .gauge("dedup_window_ids", static_cast<double>(now.seen.size()));
      for (size_t r = 0; r < now.stats.rejected.size(); ++r)
        if (now.stats.rejected[r] > 0)
          s.counter(fmt::format("dead_letters{{reason={}}}",
                                to_string(static_cast<reject_reason>(r))),
                    static_cast<double>(now.stats.rejected[r]));
      if (now.acks) {
        s.gauge("events_unsettled", static_cast<double>(now.unsettled.size()));
        for (auto& m : now.reader->counters())
          s.metrics.push_back(m);
      }
      s.queue_depth = now.outstanding;
      if (!now.sent_at.empty())
        s.oldest_wait_seconds = std::chrono::duration<double>(
                                  std::chrono::steady_clock::now()
                                  - now.sent_at.front())
                                  .count();
      s.mailbox_depth = self->mailbox().size();
      return s;
    },
  };
}

} // namespace flowmatch
