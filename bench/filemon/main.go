// Command filemon-bench measures the file monitor on a large workspace, in
// one run, against what a user would otherwise have:
//
//   - readiness: filemon.Start on a tree of 100,000 files in 10,000
//     directories, next to a plain `find` over the same tree;
//   - memory: the monitor's resident set (it runs in a child process);
//   - overhead: a build-like load (write 100,000 new files, rewrite 1,000
//     existing ones) with and without monitoring, alternating, and whether
//     every rewrite was reported;
//   - the open gate's cost: the same load reading every existing file once.
//
// Run as root (fanotify): go run ./bench/filemon [-files N] [-runs N].
// It prints a markdown table. The tree is made under -dir and removed.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/harden-runner/harden-runner/event"
	"github.com/harden-runner/harden-runner/filemon"
	"github.com/harden-runner/harden-runner/lineage"
	"github.com/harden-runner/harden-runner/proc"
)

var (
	mode       = flag.String("mode", "bench", "bench, monitor (child) or load (child)")
	dir        = flag.String("dir", os.TempDir(), "where to make the workspace")
	root       = flag.String("root", "", "workspace (children)")
	files      = flag.Int("files", 100_000, "files in the workspace")
	dirs       = flag.Int("dirs", 10_000, "directories in the workspace")
	newFiles   = flag.Int("new", 100_000, "files the build-like load writes")
	rewrites   = flag.Int("rewrite", 1_000, "existing files the load rewrites")
	runs       = flag.Int("runs", 5, "runs of each load variant")
	variant    = flag.String("variant", "", "monitor child: gate, nogate, lineage (no gate, the kernel's process table names writers: as the agent runs it) or inotify")
	readAll    = flag.Bool("read", false, "load child: read every existing file instead of writing")
	seq        = flag.Int("seq", 0, "load child: run number, varies the rewritten content")
	keep       = flag.String("keep", "", "bench: make (or reuse) the workspace here and keep it")
	profile    = flag.String("cpuprofile", "", "monitor child: write a CPU profile of Start here")
	noReady    = flag.Bool("noready", false, "bench: skip the readiness and memory measurement")
	profileAll = flag.Bool("profileall", false, "monitor child: profile until Close, not only Start")
	variantSet = flag.String("variants", "none,gate,nogate,lineage,inotify", "bench: the build-like load's variants, in the order of each run (none first: the others are compared with it)")
	noRead     = flag.Bool("noread", false, "bench: skip the read-every-file measurement")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	switch *mode {
	case "monitor":
		monitorChild()
	case "load":
		loadChild()
	default:
		bench()
	}
}

// leafDirs returns the relative directory of every leaf directory: a two
// level tree, sqrt(dirs) wide, as source trees are.
func leafDirs() []string {
	width := 1
	for width*width < *dirs {
		width++
	}
	var out []string
	for i := 0; i < width && len(out) < *dirs; i++ {
		for j := 0; j < width && len(out) < *dirs; j++ {
			out = append(out, fmt.Sprintf("src/p%03d/m%03d", i, j))
		}
	}
	return out
}

func existingFile(leaves []string, i int) string {
	return fmt.Sprintf("%s/f%03d.go", leaves[i%len(leaves)], i/len(leaves))
}

func makeTree(root string) {
	leaves := leafDirs()
	for _, d := range leaves {
		must(os.MkdirAll(filepath.Join(root, d), 0o777))
	}
	body := []byte(strings.Repeat("package x // some source text\n", 20))
	for i := 0; i < *files; i++ {
		must(os.WriteFile(filepath.Join(root, existingFile(leaves, i)), body, 0o666))
	}
	must(exec.Command("chown", "-R", "65534:65534", root).Run())
	must(exec.Command("chmod", "-R", "a+rwX", root).Run())
}

// loadChild is the build-like load: it writes *newFiles new files under
// out/ (100 per directory) and rewrites *rewrites existing files, or with
// -read reads every existing file once.
func loadChild() {
	leaves := leafDirs()
	if *readAll {
		buf := make([]byte, 64<<10)
		for i := 0; i < *files; i++ {
			f, err := os.Open(filepath.Join(*root, existingFile(leaves, i)))
			must(err)
			for {
				n, err := f.Read(buf)
				if n == 0 || err != nil {
					break
				}
			}
			f.Close()
		}
		return
	}
	body := []byte(strings.Repeat("object code, more or less\n", 40))
	// Longer than the original, so that every variant calls it an overwrite
	// (without fanotify a shorter rewrite is judged a truncation).
	rewritten := []byte(strings.Repeat("package x // some source text\n", 20) + fmt.Sprintf("// rewritten by run %d\n", *seq))
	var inRewrites time.Duration
	for i := 0; i < *newFiles; i++ {
		if i%100 == 0 {
			must(os.MkdirAll(filepath.Join(*root, fmt.Sprintf("out/o%04d", i/100)), 0o777))
		}
		must(os.WriteFile(filepath.Join(*root, fmt.Sprintf("out/o%04d/f%03d.o", i/100, i%100)), body, 0o666))
		if *rewrites > 0 && i%(*newFiles / *rewrites) == 0 && i/(*newFiles / *rewrites) < *rewrites {
			k := i / (*newFiles / *rewrites)
			p := filepath.Join(*root, existingFile(leaves, k*(*files / *rewrites)))
			t0 := time.Now()
			must(os.WriteFile(p, rewritten, 0o666))
			inRewrites += time.Since(t0)
		}
	}
	// The time spent rewriting existing files is where the open gate
	// costs; it is reported apart because it is far less noisy than the
	// wall time on a shared machine.
	fmt.Println(inRewrites.Nanoseconds())
}

// childReport is what the monitor child prints.
type childReport struct {
	ReadyMS      float64 `json:"ready_ms,omitempty"`
	RSSKB        int     `json:"rss_kb,omitempty"`
	HWMKB        int     `json:"hwm_kb,omitempty"`
	Overwrites   int     `json:"overwrites"`
	Other        int     `json:"other"`
	Lost         uint64  `json:"lost"`
	Unattributed uint64  `json:"unattributed"`
}

func monitorChild() {
	var mu sync.Mutex
	var rep childReport
	emit := func(r event.Record) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.File != nil && r.File.Event == event.Overwrite:
			rep.Overwrites++
		case r.File != nil:
			rep.Other++
		case r.Stats != nil:
			rep.Lost, rep.Unattributed = r.Stats.Lost, r.Stats.Unattributed
		}
	}
	cfg := filemon.Config{Root: *root, Emit: emit, NoOpenGate: *variant == "nogate" || *variant == "lineage", NoFanotify: *variant == "inotify"}
	if *variant == "lineage" {
		// As the agent runs it: writers named from the kernel's process
		// table, no open gate.
		tr, err := lineage.New(lineage.Config{})
		must(err)
		must(tr.Start(context.Background()))
		defer tr.Close()
		cfg.Process = proc.NewFinder(nil).WithLineage(tr).Info
	}
	m, err := filemon.New(cfg)
	must(err)
	if *profile != "" {
		f, err := os.Create(*profile)
		must(err)
		must(pprof.StartCPUProfile(f))
	}
	t0 := time.Now()
	must(m.Start(context.Background()))
	ready := time.Since(t0)
	if *profile != "" && !*profileAll {
		pprof.StopCPUProfile()
	}
	runtime.GC()
	rss, _ := statusKB("VmRSS")
	fmt.Printf("{\"ready_ms\": %.1f, \"rss_kb\": %d}\n", ready.Seconds()*1000, rss)
	bufio.NewReader(os.Stdin).ReadString('\n') // the parent says stop
	must(m.Close())
	if *profile != "" && *profileAll {
		pprof.StopCPUProfile()
	}
	rep.HWMKB, _ = statusKB("VmHWM")
	b, _ := json.Marshal(rep)
	fmt.Println(string(b))
}

func statusKB(field string) (int, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
		}
	}
	return 0, fmt.Errorf("no %s", field)
}

// monitor is a running monitor child.
type monitor struct {
	cmd   *exec.Cmd
	stdin *os.File
	out   *bufio.Reader
	ready childReport
}

func startMonitor(root, variant string) *monitor {
	self, err := os.Executable()
	must(err)
	cmd := exec.Command(self, "-mode=monitor", "-root="+root, "-variant="+variant)
	cmd.Stderr = os.Stderr
	pr, pw, err := os.Pipe()
	must(err)
	cmd.Stdin = pr
	stdout, err := cmd.StdoutPipe()
	must(err)
	must(cmd.Start())
	pr.Close()
	m := &monitor{cmd: cmd, stdin: pw, out: bufio.NewReader(stdout)}
	line, err := m.out.ReadString('\n')
	must(err)
	must(json.Unmarshal([]byte(line), &m.ready))
	return m
}

func (m *monitor) stop() childReport {
	m.stdin.WriteString("stop\n")
	line, err := m.out.ReadString('\n')
	must(err)
	var rep childReport
	must(json.Unmarshal([]byte(line), &rep))
	must(m.cmd.Wait())
	return rep
}

// runLoad runs the load child as the unprivileged user and returns its
// wall time.
func runLoad(root string, seq int, read bool) time.Duration {
	d, _, _ := runLoadRewrites(root, seq, read)
	return d
}

// runLoadRewrites also returns the time the load spent rewriting, and its
// CPU time (user + system: what the monitor adds to the load's own system
// calls, less blurred by the machine's other jobs than the wall time).
func runLoadRewrites(root string, seq int, read bool) (time.Duration, time.Duration, time.Duration) {
	self, err := os.Executable()
	must(err)
	args := []string{"--reuid=65534", "--regid=65534", "--clear-groups", self, "-mode=load", "-root=" + root,
		"-files=" + strconv.Itoa(*files), "-dirs=" + strconv.Itoa(*dirs), "-new=" + strconv.Itoa(*newFiles),
		"-rewrite=" + strconv.Itoa(*rewrites), "-seq=" + strconv.Itoa(seq)}
	if read {
		args = append(args, "-read")
	}
	cmd := exec.Command("setpriv", args...)
	cmd.Stderr = os.Stderr
	t0 := time.Now()
	out, err := cmd.Output()
	must(err)
	wall := time.Since(t0)
	ns, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return wall, time.Duration(ns), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

func cleanOut(root string) {
	must(os.RemoveAll(filepath.Join(root, "out")))
	must(exec.Command("sync").Run())
}

func minimum(ds []time.Duration) time.Duration {
	m := ds[0]
	for _, d := range ds {
		m = min(m, d)
	}
	return m
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func bench() {
	base := *keep
	if base == "" {
		var err error
		base, err = os.MkdirTemp(*dir, "filemon-bench-")
		must(err)
		defer os.RemoveAll(base)
	}
	must(os.MkdirAll(base, 0o755))
	must(os.Chmod(base, 0o755))
	root := filepath.Join(base, "ws")
	if _, err := os.Stat(root); err != nil {
		t0 := time.Now()
		makeTree(root)
		log.Printf("tree: %d files in %d leaf directories, made in %v", *files, *dirs, time.Since(t0).Round(time.Millisecond))
	}
	must(exec.Command("sync").Run())

	if !*noReady {
		benchReady(root)
	}
	if *runs > 0 {
		benchLoad(root)
	}
}

// benchReady measures readiness and memory, against find, warm cache for
// both.
func benchReady(root string) {
	var finds, readies []time.Duration
	var rss []int
	for i := 0; i < 3; i++ {
		t0 := time.Now()
		out, err := exec.Command("find", root, "-type", "f").Output()
		must(err)
		finds = append(finds, time.Since(t0))
		if n := strings.Count(string(out), "\n"); n != *files {
			log.Fatalf("find saw %d files", n)
		}
		m := startMonitor(root, "gate")
		readies = append(readies, time.Duration(m.ready.ReadyMS*float64(time.Millisecond)))
		rss = append(rss, m.ready.RSSKB)
		rep := m.stop()
		if rep.Overwrites+rep.Other != 0 || rep.Lost != 0 {
			log.Fatalf("idle monitor reported %+v", rep)
		}
		rss = append(rss, rep.HWMKB)
	}
	sort.Ints(rss)
	fmt.Printf("| workspace | %d files, %d directories |\n|---|---|\n", *files, *dirs)
	fmt.Printf("| `find -type f` (median of 3) | %v |\n", median(finds).Round(time.Millisecond))
	fmt.Printf("| filemon ready (median of 3) | %v (%.1f× find) |\n", median(readies).Round(time.Millisecond), float64(median(readies))/float64(median(finds)))
	fmt.Printf("| filemon peak RSS (max of 3) | %d MB |\n\n", rss[len(rss)-1]/1024)
}

// benchLoad runs the build-like load, alternating without and with
// monitoring, then the read-everything load that shows the gate's price.
func benchLoad(root string) {
	type variantResult struct {
		name     string
		times    []time.Duration
		rewrites []time.Duration
		cpu      []time.Duration
		reps     []childReport
	}
	var variants []*variantResult
	for _, v := range strings.Split(*variantSet, ",") {
		variants = append(variants, &variantResult{name: v})
	}
	if variants[0].name != "none" {
		log.Fatalf("-variants %q: the first must be none", *variantSet)
	}
	seq := 0
	for r := 0; r < *runs; r++ {
		order := append([]*variantResult(nil), variants...)
		if r%2 == 1 { // alternate who goes first
			slices.Reverse(order)
		}
		for _, v := range order {
			cleanOut(root)
			seq++
			var m *monitor
			if v.name != "none" {
				m = startMonitor(root, v.name)
			}
			d, rw, cpu := runLoadRewrites(root, seq, false)
			v.times = append(v.times, d)
			v.rewrites = append(v.rewrites, rw)
			v.cpu = append(v.cpu, cpu)
			if m != nil {
				v.reps = append(v.reps, m.stop())
			}
			log.Printf("run %d %-8s %v", r, v.name, d.Round(time.Millisecond))
		}
	}
	cleanOut(root)
	none := median(variants[0].times)
	noneMin := minimum(variants[0].times)
	noneCPU := median(variants[0].cpu)
	fmt.Printf("| build-like load: %d new files, %d rewrites (%d runs) | median | vs none | min | vs none | load CPU (median) | vs none | time in the rewrites (median) | rewrites reported | lost | unattributed |\n|---|---|---|---|---|---|---|---|---|---|---|\n", *newFiles, *rewrites, *runs)
	for _, v := range variants {
		rep := "-"
		lost, unattr := "-", "-"
		if len(v.reps) > 0 {
			minOK, extra := *rewrites, 0
			var l, u uint64
			for _, r := range v.reps {
				minOK = min(minOK, r.Overwrites)
				extra = max(extra, r.Other)
				l, u = max(l, r.Lost), max(u, r.Unattributed)
			}
			rep = fmt.Sprintf("%d of %d (min over runs), other events %d", minOK, *rewrites, extra)
			lost, unattr = strconv.FormatUint(l, 10), strconv.FormatUint(u, 10)
		}
		fmt.Printf("| %s | %v | %+.1f%% | %v | %+.1f%% | %v | %+.1f%% | %v | %s | %s | %s |\n", v.name,
			median(v.times).Round(time.Millisecond), 100*(float64(median(v.times))/float64(none)-1),
			minimum(v.times).Round(time.Millisecond), 100*(float64(minimum(v.times))/float64(noneMin)-1),
			median(v.cpu).Round(time.Millisecond), 100*(float64(median(v.cpu))/float64(noneCPU)-1),
			median(v.rewrites).Round(time.Millisecond), rep, lost, unattr)
	}

	if *noRead {
		return
	}
	// The gate's price: every open of an existing file waits for the agent.
	var plain, gated, ungated, fromTable []time.Duration
	for r := 0; r < *runs; r++ {
		plain = append(plain, runLoad(root, 0, true))
		m := startMonitor(root, "gate")
		gated = append(gated, runLoad(root, 0, true))
		m.stop()
		m = startMonitor(root, "nogate")
		ungated = append(ungated, runLoad(root, 0, true))
		m.stop()
		m = startMonitor(root, "lineage")
		fromTable = append(fromTable, runLoad(root, 0, true))
		m.stop()
	}
	perOpen := func(d time.Duration) string {
		return fmt.Sprintf("%+.1f µs per open", float64(d-median(plain))/float64(time.Microsecond)/float64(*files))
	}
	fmt.Printf("\n| read every existing file once (median of %d) | wall time | |\n|---|---|---|\n", *runs)
	fmt.Printf("| no monitor | %v | |\n", median(plain).Round(time.Millisecond))
	fmt.Printf("| filemon, open gate (default) | %v | %s |\n", median(gated).Round(time.Millisecond), perOpen(median(gated)))
	fmt.Printf("| filemon, NoOpenGate | %v | %s |\n", median(ungated).Round(time.Millisecond), perOpen(median(ungated)))
	fmt.Printf("| filemon, NoOpenGate + process table (the agent) | %v | %s |\n", median(fromTable).Round(time.Millisecond), perOpen(median(fromTable)))
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}
