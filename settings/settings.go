// Package settings is what a run enforces, as the user chose it: the
// Action's inputs, or `run`'s flags, and a policy file, parsed and checked
// once (Parse) into one typed Settings. The Action hands Settings to the
// host daemon as JSON (inside agent.DaemonConfig); the daemon decodes it
// and parses no text again, only checks the decoded values (Check).
//
// Both sources spell the settings alike (the Action's input names; `run`
// takes them as flags) and differ in three things, kept as they were:
// `run` defaults to audit, the Action to block; a policy file's
// egress-policy wins over the Action's input, while `run` refuses an
// --egress-policy that disagrees with it; and some settings exist for one
// source only (see Source).
package settings

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/policyfile"
	"github.com/harden-runner/harden-runner/egress/resolver"
)

// Settings are one run's enforcement choices. The zero value is not valid
// (no Mode); Parse makes valid ones.
type Settings struct {
	Mode policy.Mode `json:"egress_policy"`
	// Endpoints are the user's allowed endpoints (the setting's and the
	// policy file's), in canonical order, without duplicates.
	Endpoints []policy.Endpoint `json:"allowed_endpoints"`
	// NoRunnerEndpoints leaves out policy.Implicit, what a GitHub-hosted
	// runner needs (self-hosted runners: `run --github-runner-endpoints=false`).
	NoRunnerEndpoints bool `json:"no_runner_endpoints,omitempty"`
	FileMonitoring    bool `json:"file_monitoring"`
	// DisableSudo takes sudo away from the runner's user (the Action only).
	DisableSudo bool `json:"disable_sudo,omitempty"`
	// DisableContainers leaves docker to the runner's own docker commands
	// (dockergate); AllowDockerFor says who else keeps it.
	DisableContainers bool                `json:"disable_containers,omitempty"`
	AllowDockerFor    dockergate.AllowFor `json:"allow_docker_for,omitempty"`
	// TamperFails: tampering with our enforcement fails the run (tamper-policy
	// fail, the default) rather than being only reported.
	TamperFails bool `json:"tamper_fails"`
	// Upstreams are the DNS servers to forward to; none means the
	// machine's own (`run --upstream` only).
	Upstreams []netip.AddrPort `json:"upstreams,omitempty"`
	// PolicyFile is the policy file the settings were read from, if any.
	PolicyFile string `json:"policy_file,omitempty"`
}

// The settings' names: the Action's input names (action.yml); `run` takes
// each as a flag of the same name, except TamperPolicy (--on-tamper).
const (
	EgressPolicy             = "egress-policy"
	AllowedEndpoints         = "allowed-endpoints"
	Policy                   = "policy"
	DisableSudo              = "disable-sudo"                // the Action only
	DisableSudoAndContainers = "disable-sudo-and-containers" // the Action only
	DisableContainers        = "disable-containers"          // run only
	AllowDockerFor           = "allow-docker-for"
	DisableFileMonitoring    = "disable-file-monitoring"
	TamperPolicy             = "tamper-policy"
	RunnerEndpoints          = "github-runner-endpoints" // run only
	Upstream                 = "upstream"                // run only
)

// Source is who wrote the settings.
type Source int

const (
	// Inputs are the Action's inputs: egress-policy defaults to block, and a
	// policy file's egress-policy wins over the input.
	Inputs Source = iota
	// Flags are `run`'s flags: --egress-policy defaults to audit, and one
	// that disagrees with the policy file's is an error.
	Flags
)

// settings are the settings src has.
func (src Source) settings() []string {
	if src == Flags {
		return []string{EgressPolicy, AllowedEndpoints, Policy, DisableContainers, AllowDockerFor, DisableFileMonitoring, TamperPolicy, RunnerEndpoints, Upstream}
	}
	return []string{EgressPolicy, AllowedEndpoints, Policy, DisableSudo, DisableSudoAndContainers, AllowDockerFor, DisableFileMonitoring, TamperPolicy}
}

// Name is what src calls the setting: the input's name, or the flag's
// (without its dashes).
func (src Source) Name(setting string) string {
	if src == Flags && setting == TamperPolicy {
		return "on-tamper"
	}
	return setting
}

// InputError is a setting that could not be parsed. Its message names the
// input (or flag) and the value.
type InputError struct {
	Input string // as the source names it (Source.Name)
	Flag  bool   // Input is a flag of `run`
	Value string
	Err   error
}

func (e *InputError) Error() string {
	v := e.Value
	if len(v) > 200 {
		v = v[:200] + "…"
	}
	if e.Flag {
		return fmt.Sprintf("--%s %q: %v", e.Input, v, e.Err)
	}
	return fmt.Sprintf("input %s: %q: %v", e.Input, v, e.Err)
}

func (e *InputError) Unwrap() error { return e.Err }

// Parse parses the settings src's user gave: get returns the text given
// for a setting, by the source's name for it (Source.Name; "" when not
// given: then the setting's default applies). readPolicy reads the policy
// file the policy setting names (nil: none can be read, an error if one
// is named). Every bad setting is reported, as a joined error of
// *InputError; on any error no Settings are returned.
func Parse(src Source, get func(name string) string, readPolicy func(path string) ([]byte, error)) (*Settings, error) {
	p := parser{src: src, get: get}
	s := &Settings{}
	var file *policyfile.File
	if pf := p.value(Policy); pf != "" {
		s.PolicyFile = pf
		var err error
		if file, err = readPolicyFile(pf, readPolicy); err != nil {
			p.bad(Policy, pf, err)
		}
	}
	s.Mode = p.mode(file)
	if text := p.value(AllowedEndpoints); text != "" {
		eps, err := policy.ParseEndpoints(text)
		if err != nil {
			p.bad(AllowedEndpoints, text, err)
		}
		s.Endpoints = eps
	}
	if file != nil && len(file.Endpoints) > 0 {
		s.Endpoints = policy.Canonical(append(s.Endpoints, file.Endpoints...))
	}
	s.DisableSudo = p.bool(DisableSudo, false)
	if p.bool(DisableSudoAndContainers, false) {
		s.DisableSudo, s.DisableContainers = true, true
	}
	s.DisableContainers = p.bool(DisableContainers, s.DisableContainers)
	s.FileMonitoring = !p.bool(DisableFileMonitoring, false)
	s.NoRunnerEndpoints = !p.bool(RunnerEndpoints, true)
	var err error
	v := p.value(AllowDockerFor)
	if s.AllowDockerFor, err = dockergate.ParseAllowFor(v); err != nil {
		p.bad(AllowDockerFor, v, err)
	}
	v = p.value(TamperPolicy)
	if s.TamperFails, err = ParseTamperPolicy(v); err != nil {
		p.bad(TamperPolicy, v, err)
	}
	if v := p.value(Upstream); v != "" {
		for _, u := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' }) {
			ap, err := resolver.ParseUpstream(u)
			if err != nil {
				p.bad(Upstream, v, err)
				break
			}
			s.Upstreams = append(s.Upstreams, ap)
		}
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return s, nil
}

// ParseTamperPolicy parses tamper-policy (`run --on-tamper`): true for
// "fail" or "", false for "report".
func ParseTamperPolicy(v string) (fails bool, err error) {
	switch v {
	case "", "fail":
		return true, nil
	case "report":
		return false, nil
	}
	return true, errors.New("want fail or report")
}

// ParseBool parses a boolean setting as @actions/core's getBooleanInput
// does (YAML 1.2 core schema): true, True, TRUE, false, False, FALSE; ""
// is false.
func ParseBool(s string) (bool, error) {
	switch s {
	case "", "false", "False", "FALSE":
		return false, nil
	case "true", "True", "TRUE":
		return true, nil
	}
	return false, errors.New("want true or false")
}

// Check checks decoded Settings (from JSON, not from Parse) for values no
// parse would have given: an unknown egress policy would otherwise be
// enforced as audit, so it is an error, as is an unknown allow-docker-for
// or an upstream without an address or port.
func (s *Settings) Check() error {
	if s.Mode != policy.Audit && s.Mode != policy.Block {
		return fmt.Errorf("settings: egress policy %q is not %q or %q", s.Mode, policy.Audit, policy.Block)
	}
	if _, err := dockergate.ParseAllowFor(string(s.AllowDockerFor)); err != nil {
		return fmt.Errorf("settings: allow-docker-for %q: %w", s.AllowDockerFor, err)
	}
	for _, u := range s.Upstreams {
		if !u.IsValid() || u.Port() == 0 {
			return fmt.Errorf("settings: upstream %q: want an address and a port", u)
		}
	}
	return nil
}

// parser reads one source's settings and collects their errors.
type parser struct {
	src  Source
	get  func(string) string
	errs []error
}

// value is the text given for setting, "" if the source has no such setting.
func (p *parser) value(setting string) string {
	if !slices.Contains(p.src.settings(), setting) {
		return ""
	}
	return p.get(p.src.Name(setting))
}

func (p *parser) bad(setting, value string, err error) {
	p.errs = append(p.errs, &InputError{Input: p.src.Name(setting), Flag: p.src == Flags, Value: value, Err: err})
}

// bool parses a boolean setting; def when it is not given.
func (p *parser) bool(setting string, def bool) bool {
	v := p.value(setting)
	if v == "" {
		return def
	}
	b, err := ParseBool(v)
	if err != nil {
		p.bad(setting, v, err)
	}
	return b
}

// mode is the egress policy from the setting and the policy file.
func (p *parser) mode(file *policyfile.File) policy.Mode {
	v := p.value(EgressPolicy)
	var given policy.Mode
	if v != "" {
		m, err := policy.ParseMode(v)
		if err != nil {
			p.bad(EgressPolicy, v, errors.New(`want "audit" or "block"`))
			return ""
		}
		given = m
	}
	var fromFile policy.Mode
	if file != nil && file.EgressPolicy != "" {
		fromFile, _ = policy.ParseMode(file.EgressPolicy) // policyfile checked it
	}
	switch {
	case fromFile != "" && given != "" && given != fromFile && p.src == Flags:
		p.bad(EgressPolicy, v, fmt.Errorf("disagrees with the egress-policy %q of --policy %s", file.EgressPolicy, p.value(Policy)))
		return ""
	case fromFile != "":
		return fromFile
	case given != "":
		return given
	case p.src == Flags:
		return policy.Audit
	}
	return policy.Block
}

// readPolicyFile reads and parses the policy file at path.
func readPolicyFile(path string, read func(string) ([]byte, error)) (*policyfile.File, error) {
	if read == nil {
		return nil, errors.New("no workspace to read it from")
	}
	b, err := read(path)
	if err != nil {
		return nil, err
	}
	return policyfile.Parse(path, b)
}
