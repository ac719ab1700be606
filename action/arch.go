package action

import (
	"fmt"
	"strings"
)

// runnerArchs maps the runner's RUNNER_ARCH to the Go architecture of the
// binary that must run there; the image's manifest list has one entry for
// each (see dist/build.sh).
var runnerArchs = map[string]string{"X64": "amd64", "ARM64": "arm64"}

// CheckArch returns an error naming the runner's architecture when this
// binary (built for goarch, runtime.GOARCH) is not the one for it: on a
// runner kind the release has no binary for, or when an image of the wrong
// architecture runs under emulation (binfmt), which would install an
// emulated agent on the host. runnerArch is RUNNER_ARCH as the runner sets
// it (X86, X64, ARM, ARM64); empty (not on a runner) passes.
func CheckArch(runnerArch, goarch string) error {
	if runnerArch == "" {
		return nil
	}
	want, ok := runnerArchs[strings.ToUpper(runnerArch)]
	if !ok {
		return fmt.Errorf("this runner's architecture is RUNNER_ARCH=%q; harden-runner has binaries for X64 (amd64) and ARM64 (arm64) runners only", runnerArch)
	}
	if want != goarch {
		return fmt.Errorf("this runner's architecture is RUNNER_ARCH=%q (%s) but this harden-runner binary is for %s: "+
			"the image was pulled for the wrong platform or runs under emulation; use a release whose image lists linux/%s",
			runnerArch, want, goarch, want)
	}
	return nil
}
