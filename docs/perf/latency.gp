# latency.gp: distribution of the latency the worker adds (scripts/bench writes
# latency-{half,full}-{in,out}.dat, one value in µs per line, sorted; run from docs/perf/).
# in: delivery -> first KONE request sent; out: outcome known -> result handed to Kafka.
set terminal pngcairo size 800,500 font ",10"
set output "latency.png"
set title "Latency the worker adds (cumulative share of jobs)"
set xlabel "µs (log scale)"
set ylabel "share of jobs at or below"
set logscale x
set yrange [0:1]
set key bottom right box opaque
set grid
set arrow from 1000, graph 0 to 1000, graph 1 nohead dt 3
set label "1 ms" at 1000, graph 0.05 offset 0.5, 0
n(f) = real(system("wc -l < " . f))
nh_in = n("latency-half-in.dat"); nh_out = n("latency-half-out.dat")
nf_in = n("latency-full-in.dat"); nf_out = n("latency-full-out.dat")
plot "latency-half-in.dat" using ($1 < 1 ? 1 : $1):($0 / nh_in) with lines lw 2 title "half load: delivery -> request", \
     "latency-half-out.dat" using ($1 < 1 ? 1 : $1):($0 / nh_out) with lines lw 2 title "half load: outcome -> result produced", \
     "latency-full-in.dat" using ($1 < 1 ? 1 : $1):($0 / nf_in) with lines lw 2 dt 2 title "full load: delivery -> request", \
     "latency-full-out.dat" using ($1 < 1 ? 1 : $1):($0 / nf_out) with lines lw 2 dt 2 title "full load: outcome -> result produced"
