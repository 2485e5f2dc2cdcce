# throughput.gp: jobs per second against workers (scripts/bench writes throughput.dat:
# "workers jobs_per_s" and baseline.dat: "name rate_per_s"; run from docs/perf/).
set terminal pngcairo size 800,500 font ",10"
set output "throughput.png"
set title "kone-worker: jobs per second end to end"
set xlabel "workers"
set ylabel "jobs / s"
set xtics (1, 2, 4)
set xrange [0.5:4.5]
set yrange [0:*]
set key bottom right box opaque
set grid ytics
slowest = real(system("awk 'NR == 1 || $2 < m { m = $2 } END { print m + 0 }' baseline.dat"))
plot "throughput.dat" using 1:2 with linespoints lw 2 pt 7 title "pipeline", \
     slowest with lines dt 2 lw 1 title sprintf("slowest baseline (%.0f/s)", slowest), \
     0.8 * slowest with lines dt 3 lw 1 title "80% of it (target for 1 worker)"
