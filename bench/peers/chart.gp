# bench_peers' chart: gnuplot -e "datafile='peers.dat'; outfile='peers.png'" chart.gp
# (note='...': a line under the title, e.g. that this was a smoke run)
# datafile: four blocks (create, get, query ops/s; create p99 ms), each a
# header line "conns" + system names, then one line per connection count.
set terminal pngcairo size 1400,1000 font ",11"
set output outfile
if (!exists("note")) note = ""
set multiplot layout 2,2 title "crmd and its peers: same machine, same run, same load generator (1 request in flight per connection)" . (note eq "" ? "" : "\n" . note)
set logscale x 2
set xtics (1, 16, 64, 256)
set xrange [0.7:370]
set xlabel "connections"
set grid
set key top left
set style data linespoints
array T[4] = ["create (durable, loyalty hook, 1 subscriber): ops/s", "get by id: ops/s", \
              "indexed query returning 10 records: ops/s", "create: p99 latency, ms (log)"]
do for [b = 0:3] {
    set title T[b + 1]
    set ylabel (b == 3 ? "ms" : "ops/s")
    if (b == 3) { set logscale y; set yrange [*:*] } else { unset logscale y; set yrange [0:*] }
    plot for [c = 2:5] datafile index b using 1:c title columnheader(c) lw 2 pt 7
}
unset multiplot
