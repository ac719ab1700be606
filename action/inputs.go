package action

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/harden-runner/harden-runner/settings"
)

// Input names, as action.yml declares them (StepSecurity Harden-Runner's).
// The enforcement settings are package settings' names.
const (
	InputEgressPolicy             = settings.EgressPolicy
	InputAllowedEndpoints         = settings.AllowedEndpoints
	InputDisableSudo              = settings.DisableSudo
	InputDisableSudoAndContainers = settings.DisableSudoAndContainers
	InputAllowDockerFor           = settings.AllowDockerFor
	InputDisableFileMonitoring    = settings.DisableFileMonitoring
	InputDisableTelemetry         = "disable-telemetry"
	InputPolicy                   = settings.Policy
	InputToken                    = "token"
	InputKeepEnforcement          = "keep-enforcement" // see keep.go
)

// Inputs are the parsed and checked action inputs: the enforcement
// settings (handed to the agent as they are) and the Action's own.
type Inputs struct {
	settings.Settings
	DisableTelemetry bool // accepted for compatibility; nothing is ever sent
	Token            string
}

// InputError is a malformed input. Its message names the input and the value.
type InputError = settings.InputError

// ParseInputs reads the inputs through get (githubactions.Action.GetInput:
// trimmed, "" when unset) and, when the policy input is set, the policy
// file through readFile (relative to the workspace). Every malformed input
// is reported, as a joined error of *InputError.
//
// Defaults are action.yml's: egress-policy block, the rest false/empty. A
// policy file's egress-policy wins over the input; its allowed-endpoints
// are added to the input's (package settings).
func ParseInputs(get func(string) string, readFile func(string) ([]byte, error)) (*Inputs, error) {
	var errs []error
	s, err := settings.Parse(settings.Inputs, get, workspacePolicy(readFile))
	if err != nil {
		errs = append(errs, err.(interface{ Unwrap() []error }).Unwrap()...)
	}
	in := &Inputs{Token: get(InputToken)}
	if s != nil {
		in.Settings = *s
	}
	v := get(InputDisableTelemetry)
	if in.DisableTelemetry, err = settings.ParseBool(v); err != nil {
		errs = append(errs, &InputError{Input: InputDisableTelemetry, Value: v, Err: err})
	}
	if _, err := KeepEnforcement(get, func(string) string { return "" }); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return in, nil
}

// workspacePolicy reads a policy file through readFile after checking
// that its path stays inside the workspace.
func workspacePolicy(readFile func(string) ([]byte, error)) func(string) ([]byte, error) {
	return func(p string) ([]byte, error) {
		clean := path.Clean(strings.TrimPrefix(p, "./"))
		if path.IsAbs(p) || clean == ".." || strings.HasPrefix(clean, "../") || strings.ContainsRune(p, 0) {
			return nil, errors.New("want a path relative to the repository root, inside it")
		}
		if readFile == nil {
			return nil, errors.New("no workspace to read it from")
		}
		b, err := readFile(clean)
		if err != nil {
			return nil, fmt.Errorf("read: %w", err)
		}
		return b, nil
	}
}
