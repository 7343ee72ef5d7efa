#include "system/state_file.hpp"

#include "base/output_file.hpp"
#include "messages/encoder.hpp"

namespace flowmatch {

std::string write_state_file(const std::string& path,
                             const registry_snapshot& snap) {
  output_file out;
  bool ok = out.open(path, output_file::whole);
  // Sites first, so the snapshot read back in order never holds a flow.
  std::string line;
  for (size_t i = 0; ok && i < snap.sites.size(); ++i) {
    line = site_snapshot_line(snap.sites[i]);
    line.push_back('\n');
    ok = out.write(line);
  }
  for (size_t i = 0; ok && i < snap.flows.size(); ++i) {
    line = flow_snapshot_line(snap.flows[i]);
    line.push_back('\n');
    ok = out.write(line);
  }
  ok = out.commit() && ok;
  return ok ? std::string{} : out.error();
}

} // namespace flowmatch
