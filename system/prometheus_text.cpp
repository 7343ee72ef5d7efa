#include "system/prometheus_text.hpp"

#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>

#include <cctype>
#include <limits>
#include <map>
#include <sstream>

namespace flowmatch {

namespace {

/// Letters, digits and underscores only (a Prometheus metric name).
std::string sanitize(const std::string& s) {
  std::string out;
  for (char c : s)
    out += std::isalnum(static_cast<unsigned char>(c)) ? c : '_';
  return out;
}

/// Splits `name{k=v,k2=v2}` into the name and its labels.
void split_labels(const std::string& full, std::string& name,
                  std::vector<prometheus::ClientMetric::Label>& labels) {
  auto open = full.find('{');
  if (open == std::string::npos || full.back() != '}') {
    name = full;
    return;
  }
  name = full.substr(0, open);
  auto body = full.substr(open + 1, full.size() - open - 2);
  size_t start = 0;
  while (start < body.size()) {
    auto comma = body.find(',', start);
    auto part = body.substr(start, comma == std::string::npos
                                     ? std::string::npos
                                     : comma - start);
    auto eq = part.find('=');
    if (eq != std::string::npos)
      labels.push_back({sanitize(part.substr(0, eq)), part.substr(eq + 1)});
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
}

struct families {
  std::map<std::string, prometheus::MetricFamily> by_name;

  prometheus::MetricFamily& get(const std::string& name,
                                prometheus::MetricType type,
                                const std::string& help) {
    auto& f = by_name[name];
    if (f.name.empty()) {
      f.name = name;
      f.type = type;
      f.help = help;
    }
    return f;
  }

  void add(const std::string& name, prometheus::MetricType type,
           const std::string& help,
           std::vector<prometheus::ClientMetric::Label> labels, double v) {
    auto& f = get(name, type, help);
    if (f.type != type)
      return; // one type per family: the first one seen wins
    prometheus::ClientMetric m;
    m.label = std::move(labels);
    if (type == prometheus::MetricType::Counter)
      m.counter.value = v;
    else
      m.gauge.value = v;
    f.metric.push_back(std::move(m));
  }
};

} // namespace

std::string render_prometheus(const std::vector<actor_status>& stages,
                              const build_info& build) {
  families fs;
  fs.add("flowmatch_build_info", prometheus::MetricType::Gauge,
         "The version and git commit of this build (always 1)",
         {{"version", build.version}, {"commit", build.commit}}, 1);
  for (auto& s : stages) {
    for (auto& m : s.metrics) {
      std::string name;
      std::vector<prometheus::ClientMetric::Label> labels;
      split_labels(m.name, name, labels);
      labels.insert(labels.begin(), {"actor", s.actor});
      auto family = "flowmatch_" + sanitize(name);
      if (m.counter)
        fs.add(family + "_total", prometheus::MetricType::Counter,
               "Counter " + name + " of the flowmatch stages",
               std::move(labels), m.value);
      else
        fs.add(family, prometheus::MetricType::Gauge,
               "Gauge " + name + " of the flowmatch stages",
               std::move(labels), m.value);
    }
    for (auto& h : s.histograms) {
      std::string name;
      std::vector<prometheus::ClientMetric::Label> labels;
      split_labels(h.name, name, labels);
      labels.insert(labels.begin(), {"actor", s.actor});
      auto& f = fs.get("flowmatch_" + sanitize(name),
                       prometheus::MetricType::Histogram,
                       "Histogram " + name + " of the flowmatch stages");
      if (f.type != prometheus::MetricType::Histogram)
        continue;
      prometheus::ClientMetric m;
      m.label = std::move(labels);
      m.histogram.sample_count = h.data.count;
      m.histogram.sample_sum = h.data.sum;
      uint64_t cumulative = 0;
      for (size_t i = 0; i < h.data.bounds.size(); ++i) {
        cumulative += i < h.data.counts.size() ? h.data.counts[i] : 0;
        m.histogram.bucket.push_back({cumulative, h.data.bounds[i]});
      }
      // The +Inf bucket holds every observation.
      m.histogram.bucket.push_back(
        {h.data.count, std::numeric_limits<double>::infinity()});
      f.metric.push_back(std::move(m));
    }
    fs.add("flowmatch_actor_mailbox_depth", prometheus::MetricType::Gauge,
           "Messages in the actor's mailbox, not yet handled, when it "
           "answered its last status request",
           {{"actor", s.actor}}, static_cast<double>(s.mailbox_depth));
    fs.add("flowmatch_actor_mailbox_wait_seconds",
           prometheus::MetricType::Gauge,
           "How long a message waited in the actor's mailbox: the round trip "
           "of the last status request",
           {{"actor", s.actor}}, s.mailbox_wait_seconds);
    fs.add("flowmatch_actor_queue_depth", prometheus::MetricType::Gauge,
           "Items waiting inside a long-lived actor (unwritten changes, "
           "unacknowledged batches, batches waiting for credit)",
           {{"actor", s.actor}}, static_cast<double>(s.queue_depth));
    fs.add("flowmatch_actor_oldest_wait_seconds",
           prometheus::MetricType::Gauge,
           "How long the oldest item waiting inside the actor has waited: "
           "a stuck or slow stage shows here first",
           {{"actor", s.actor}}, s.oldest_wait_seconds);
  }
  std::vector<prometheus::MetricFamily> out;
  for (auto& [_, f] : fs.by_name)
    out.push_back(std::move(f));
  std::ostringstream text;
  prometheus::TextSerializer{}.Serialize(text, out);
  return text.str();
}

} // namespace flowmatch
