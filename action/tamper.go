package action

import "fmt"

// InputTamperPolicy says what a change to our own enforcement (our nftables
// table deleted or flushed, a chain put ahead of ours, a sysctl that
// weakens the rules; egress/guard) does to the job: "fail" (default) makes
// the post step fail; "report" only records it as an error in the report.
const InputTamperPolicy = "tamper-policy"

// TamperFails reads tamper-policy: true for "fail" or empty, false for
// "report".
func TamperFails(getInput func(string) string) (bool, error) {
	switch v := getInput(InputTamperPolicy); v {
	case "", "fail":
		return true, nil
	case "report":
		return false, nil
	default:
		return true, &InputError{Input: InputTamperPolicy, Value: v, Err: fmt.Errorf("want fail or report")}
	}
}
