package lineage

// The BPF object is built with Debian's clang (14) and committed; CI
// regenerates it and fails on a difference. -g gives the BTF that CO-RE
// needs (bpf2go strips the DWARF); the include path is the Debian amd64 one.
//go:generate go tool bpf2go -cc clang -target bpfel -type lin_task -type lin_exec -type lin_owner -type lin_flow -type lin_flowrec -type lin_local -type lin_accept -output-stem bpf lineage bpf/lineage.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu
//go:generate go tool bpf2go -cc clang -target bpfel -type lin_sysctl -output-stem sysctl_bpf sysctlw bpf/sysctl.c -- -O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu
