package killwatch

// The BPF object is built with Debian's clang (14) and committed; CI
// regenerates it and fails on a difference (as lineage's).
//go:generate go tool bpf2go -cc clang -target bpfel -type kw_proc -type kw_key -type kw_kill -output-stem bpf killwatch bpf/killwatch.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu
