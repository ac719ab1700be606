package action

import (
	"fmt"

	"github.com/harden-runner/harden-runner/settings"
)

// KeepEnforcement tells whether the post step leaves the agent enforcing
// and reports a snapshot of its journal (true), or stops it and gives
// the VM back as it was (false). The keep-enforcement input decides; when
// it is empty, a GitHub-hosted runner (RUNNER_ENVIRONMENT=github-hosted),
// whose VM is discarded after the job, keeps enforcing, so that a process
// a step left running gets nothing out while the runner's last steps run;
// a self-hosted machine is torn down cleanly, as it outlives the job.
func KeepEnforcement(getInput, getenv func(string) string) (bool, error) {
	v := getInput(InputKeepEnforcement)
	if v == "" {
		return getenv("RUNNER_ENVIRONMENT") == "github-hosted", nil
	}
	keep, err := settings.ParseBool(v)
	if err != nil {
		return false, &InputError{Input: InputKeepEnforcement, Value: v, Err: fmt.Errorf("want true, false, or empty: %w", err)}
	}
	return keep, nil
}
