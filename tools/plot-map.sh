#!/usr/bin/env bash
# Draws a map (PNG, gnuplot) of the sites and matched pairs of a schema in
# the local cluster: sites as dots, each match as a line from supply to
# demand, coloured by resource class.
#
#   tools/plot-map.sh [schema] [out.png]      (defaults: example, var/example/map.png)
set -euo pipefail
cd "$(dirname "$0")/.."
schema=${1:-example}
out=${2:-var/example/map.png}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
psql_q() { tools/pg.sh psql -qAt -F ' ' -c "SET search_path TO \"$schema\", public" -c "$1"; }
psql_q "SELECT lon, lat FROM sites" >"$tmp/sites"
for cls in heat water material co2; do
  # One segment per match: x y dx dy for gnuplot's vectors.
  psql_q "SELECT s.lon, s.lat, d.lon - s.lon, d.lat - s.lat
          FROM matches m JOIN sites s ON s.site_id = m.supply_site_id
          JOIN sites d ON d.site_id = m.demand_site_id
          WHERE m.resource = '$cls'" >"$tmp/$cls"
done
counts=$(psql_q "SELECT string_agg(resource || ' ' || n, ', ' ORDER BY resource)
                 FROM (SELECT resource, count(*) n FROM matches GROUP BY 1) t")
gnuplot <<GP
set terminal pngcairo size 1200,1300 font "sans,11"
set output "$out"
set title "flowmatch: $(wc -l <"$tmp/sites") sites, matches: ${counts:-none}"
set xrange [-12:35]
set yrange [34:71]
# A degree of longitude is cos(lat) of a degree of latitude: 1.6 fits 51 N.
set size ratio -1.6
set xlabel "longitude"
set ylabel "latitude"
set key top left box opaque
set style line 1 lc rgb "#d7301f" lw 1.2
set style line 2 lc rgb "#2b8cbe" lw 1.2
set style line 3 lc rgb "#8c6d31" lw 0.6
set style line 4 lc rgb "#31a354" lw 1.0
plot "$tmp/sites" using 1:2 with points pt 7 ps 0.15 lc rgb "#aaaaaa" title "sites", \
     "$tmp/material" using 1:2:3:4 with vectors nohead ls 3 title "material", \
     "$tmp/co2" using 1:2:3:4 with vectors nohead ls 4 title "CO2", \
     "$tmp/water" using 1:2:3:4 with vectors nohead ls 2 title "water", \
     "$tmp/heat" using 1:2:3:4 with vectors nohead ls 1 title "heat"
GP
echo "map:            $out"
