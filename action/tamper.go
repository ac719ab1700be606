package action

import "github.com/harden-runner/harden-runner/settings"

// InputTamperPolicy says what a change to our own enforcement (our nftables
// table deleted or flushed, a chain put ahead of ours, a sysctl that
// weakens the rules; egress/guard) does to the job: "fail" (default) makes
// the post step fail; "report" only records it as an error in the report.
const InputTamperPolicy = settings.TamperPolicy

// TamperFails reads tamper-policy: true for "fail" or empty, false for
// "report".
func TamperFails(getInput func(string) string) (bool, error) {
	v := getInput(InputTamperPolicy)
	fails, err := settings.ParseTamperPolicy(v)
	if err != nil {
		return true, &InputError{Input: InputTamperPolicy, Value: v, Err: err}
	}
	return fails, nil
}
