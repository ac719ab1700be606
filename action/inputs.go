package action

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/policyfile"
)

// Input names, as action.yml declares them (StepSecurity Harden-Runner's).
const (
	InputEgressPolicy             = "egress-policy"
	InputAllowedEndpoints         = "allowed-endpoints"
	InputDisableSudo              = "disable-sudo"
	InputDisableSudoAndContainers = "disable-sudo-and-containers"
	InputAllowDockerFor           = "allow-docker-for"
	InputDisableFileMonitoring    = "disable-file-monitoring"
	InputDisableTelemetry         = "disable-telemetry"
	InputPolicy                   = "policy"
	InputToken                    = "token"
	InputKeepEnforcement          = "keep-enforcement" // see keep.go
)

// Inputs are the parsed and checked action inputs.
type Inputs struct {
	Mode                     policy.Mode
	AllowedEndpoints         string // the inputs' and the policy file's entries, newline-separated
	Endpoints                []policy.Endpoint
	DisableSudo              bool // also true when DisableSudoAndContainers is
	DisableSudoAndContainers bool
	// AllowDockerFor is who keeps docker under DisableSudoAndContainers:
	// "runner" (default) or "containers" (dockergate.AllowFor).
	AllowDockerFor        string
	DisableFileMonitoring bool
	DisableTelemetry      bool // accepted for compatibility; nothing is ever sent
	PolicyFile            string
	Token                 string
}

// InputError is a malformed input. Its message names the input and the value.
type InputError struct {
	Input string
	Value string
	Err   error
}

func (e *InputError) Error() string {
	v := e.Value
	if len(v) > 200 {
		v = v[:200] + "…"
	}
	return fmt.Sprintf("input %s: %q: %v", e.Input, v, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// ParseInputs reads the inputs through get (githubactions.Action.GetInput:
// trimmed, "" when unset) and, when the policy input is set, the policy
// file through readFile (relative to the workspace). Every malformed input
// is reported, as a joined error of *InputError.
//
// Defaults are action.yml's: egress-policy block, the rest false/empty. A
// policy file's egress-policy wins over the input; its allowed-endpoints
// are added to the input's.
func ParseInputs(get func(string) string, readFile func(string) ([]byte, error)) (*Inputs, error) {
	in := &Inputs{Token: get(InputToken)}
	var errs []error
	bad := func(name, val string, err error) { errs = append(errs, &InputError{Input: name, Value: val, Err: err}) }

	modeStr := get(InputEgressPolicy)
	if modeStr == "" {
		modeStr = string(policy.Block)
	}
	endpoints := get(InputAllowedEndpoints)
	if pf := get(InputPolicy); pf != "" {
		in.PolicyFile = pf
		file, err := loadPolicyFile(pf, readFile)
		if err != nil {
			bad(InputPolicy, pf, err)
		} else {
			if file.EgressPolicy != "" {
				modeStr = file.EgressPolicy
			}
			if file.AllowedEndpoints != "" {
				endpoints = strings.TrimSpace(endpoints + "\n" + file.AllowedEndpoints)
			}
		}
	}
	if m, err := policy.ParseMode(modeStr); err != nil {
		bad(InputEgressPolicy, modeStr, errors.New(`want "audit" or "block"`))
	} else {
		in.Mode = m
	}
	if eps, err := policy.ParseEndpoints(endpoints); err != nil {
		bad(InputAllowedEndpoints, endpoints, err)
	} else {
		in.Endpoints = eps
		in.AllowedEndpoints = endpoints
	}
	for _, b := range []struct {
		name string
		dst  *bool
	}{
		{InputDisableSudo, &in.DisableSudo},
		{InputDisableSudoAndContainers, &in.DisableSudoAndContainers},
		{InputDisableFileMonitoring, &in.DisableFileMonitoring},
		{InputDisableTelemetry, &in.DisableTelemetry},
	} {
		v := get(b.name)
		ok, err := parseBool(v)
		if err != nil {
			bad(b.name, v, err)
		}
		*b.dst = ok
	}
	if in.DisableSudoAndContainers {
		in.DisableSudo = true
	}
	if _, err := KeepEnforcement(get, func(string) string { return "" }); err != nil {
		errs = append(errs, err)
	}
	if _, err := TamperFails(get); err != nil {
		errs = append(errs, err)
	}
	if v := get(InputAllowDockerFor); v != "" {
		if af, err := dockergate.ParseAllowFor(v); err != nil {
			bad(InputAllowDockerFor, v, err)
		} else {
			in.AllowDockerFor = string(af)
		}
	} else {
		in.AllowDockerFor = string(dockergate.AllowRunner)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return in, nil
}

// parseBool accepts what @actions/core's getBooleanInput does (YAML 1.2
// core schema): true, True, TRUE, false, False, FALSE; "" is false.
func parseBool(s string) (bool, error) {
	switch s {
	case "", "false", "False", "FALSE":
		return false, nil
	case "true", "True", "TRUE":
		return true, nil
	}
	return false, errors.New("want true or false")
}

// loadPolicyFile checks that p stays inside the workspace and parses it.
func loadPolicyFile(p string, readFile func(string) ([]byte, error)) (*policyfile.File, error) {
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
	return policyfile.Parse(clean, b)
}
