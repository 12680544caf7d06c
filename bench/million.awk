# million.awk: the scale benchmarks' figures by size, and the ratio of the
# largest size's to the smallest's (make bench-million pipes `go test
# -bench` output through it). The figure is a benchmark's CPU time per
# operation or entry (cpu-ns/op, cpu-ns/fd, cpu-ns/item, cpu-ns/conn,
# cpu-ns/recipient, cpu-ns/entry: other processes' load does not inflate
# it as it does wall time) when it reports one, else its wall-time ns
# figure; with -count, the smallest of the runs. O(1) per entry: the
# ratio stays far below the size ratio (16 from 2^16 to 2^20).
/^Benchmark/ {
	name = $1
	sub(/-[0-9]+$/, "", name)                       # GOMAXPROCS suffix
	if (!match(name, /=[0-9]+$/)) next
	size = substr(name, RSTART + 1) + 0
	key = substr(name, 1, RSTART)
	val = ""; unit = ""; rank = 0
	for (i = 3; i < NF; i++) {
		m = $(i+1)
		r = (m ~ /^cpu-ns\//) ? 3 : (m ~ /^ns\// && m != "ns/op") ? 2 : (m == "ns/op") ? 1 : 0
		if (r > rank) { val = $i; unit = m; rank = r }
	}
	if (val == "") next
	if (!(key in seen)) { seen[key] = 1; order[++n] = key }
	if (!((key, size) in v) || val + 0 < v[key, size] + 0) v[key, size] = val
	u[key] = unit
	if (!(size in sizes)) { sizes[size] = 1; slist[++ns] = size }
}
END {
	# sizes ascending
	for (i = 1; i <= ns; i++) for (j = i + 1; j <= ns; j++) if (slist[j] < slist[i]) { t = slist[i]; slist[i] = slist[j]; slist[j] = t }
	printf "%-48s %-14s", "benchmark", "unit"
	for (i = 1; i <= ns; i++) printf " %12s", slist[i]
	printf " %10s\n", "ratio"
	for (k = 1; k <= n; k++) {
		key = order[k]
		printf "%-48s %-14s", key, u[key]
		first = ""; last = ""
		for (i = 1; i <= ns; i++) {
			if ((key, slist[i]) in v) { x = v[key, slist[i]]; printf " %12.1f", x; if (first == "") first = x; last = x }
			else printf " %12s", "-"
		}
		if (first != "" && first > 0 && last != first) printf " %9.2fx\n", last / first; else printf " %10s\n", "-"
	}
}
