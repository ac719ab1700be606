package action

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/egress/policy"
	"github.com/harden-runner/harden-runner/egress/policyfile"
)

func getter(m map[string]string) func(string) string {
	return func(k string) string { return strings.TrimSpace(m[k]) }
}

func TestParseInputs(t *testing.T) {
	files := map[string]string{
		"policy.yml":       "egress-policy: audit\nallowed-endpoints:\n  - example.test:443 # ok\n  - \"*.cdn.test:443\"\n",
		"bad.yml":          "egress-policy: block\nfoo: bar\n",
		"badendpoint.yml":  "allowed-endpoints: bad..name:443\n",
		".github/hr.yml":   "allowed-endpoints: >\n  a.test:443\n  b.test:80\n",
		"modeonly.yml":     "egress-policy: audit\n",
		"badmode.yml":      "egress-policy: yes\n",
		"duplicate.yml":    "egress-policy: audit\negress-policy: block\n",
		"sub/../flat.yml":  "",
		"flowlist.yml":     "allowed-endpoints: [a.test:443, 'b.test:443']\n",
		"blockscalar.yml":  "allowed-endpoints: |\n  a.test:443 # not a comment in YAML? it is text here\n",
		"crlf.yml":         "egress-policy: audit\r\nallowed-endpoints: a.test:443\r\n",
		"tabindent.yml":    "allowed-endpoints:\n\t- a.test:443\n",
		"continuation.yml": "egress-policy: audit\n  block\n",
	}
	read := func(name string) ([]byte, error) {
		s, ok := files[name]
		if !ok {
			return nil, os.ErrNotExist
		}
		return []byte(s), nil
	}
	tests := []struct {
		name      string
		in        map[string]string
		mode      policy.Mode
		endpoints int
		errs      []string // inputs named in the errors
		errText   string
		check     func(t *testing.T, in *Inputs)
	}{
		{name: "defaults", in: map[string]string{}, mode: policy.Block},
		{name: "audit", in: map[string]string{"egress-policy": " Audit "}, mode: policy.Audit},
		{name: "endpoints", in: map[string]string{"allowed-endpoints": "github.com:443\napi.github.com:443, *.x.test:443"}, mode: policy.Block, endpoints: 3},
		{name: "bad mode", in: map[string]string{"egress-policy": "strict"}, errs: []string{"egress-policy"}, errText: `"strict"`},
		{name: "bad endpoint", in: map[string]string{"allowed-endpoints": "github.com:99999"}, errs: []string{"allowed-endpoints"}, errText: "github.com:99999"},
		{name: "bad bool", in: map[string]string{"disable-sudo": "yes"}, errs: []string{"disable-sudo"}, errText: `"yes"`},
		{name: "all errors at once", in: map[string]string{"egress-policy": "x", "disable-file-monitoring": "1", "disable-telemetry": "on"},
			errs: []string{"egress-policy", "disable-file-monitoring", "disable-telemetry"}},
		{name: "bools", in: map[string]string{"disable-sudo-and-containers": "TRUE", "disable-file-monitoring": "true", "disable-telemetry": "False"}, mode: policy.Block,
			check: func(t *testing.T, in *Inputs) {
				if !in.DisableSudo || !in.DisableContainers || in.FileMonitoring || in.DisableTelemetry {
					t.Errorf("bools: %+v", in)
				}
			}},
		{name: "allow-docker-for default", in: map[string]string{}, mode: policy.Block,
			check: func(t *testing.T, in *Inputs) {
				if in.AllowDockerFor != "runner" {
					t.Errorf("allow-docker-for %q", in.AllowDockerFor)
				}
			}},
		{name: "allow-docker-for containers", in: map[string]string{"allow-docker-for": "containers"}, mode: policy.Block,
			check: func(t *testing.T, in *Inputs) {
				if in.AllowDockerFor != "containers" {
					t.Errorf("allow-docker-for %q", in.AllowDockerFor)
				}
			}},
		{name: "bad allow-docker-for", in: map[string]string{"allow-docker-for": "everyone"}, errs: []string{"allow-docker-for"}, errText: `"everyone"`},
		{name: "token", in: map[string]string{"token": "ghs_x"}, mode: policy.Block,
			check: func(t *testing.T, in *Inputs) {
				if in.Token != "ghs_x" {
					t.Errorf("token %q", in.Token)
				}
			}},
		{name: "policy file wins mode, adds endpoints", in: map[string]string{"policy": "policy.yml", "allowed-endpoints": "github.com:443"}, mode: policy.Audit, endpoints: 3},
		{name: "policy file block scalar", in: map[string]string{"policy": "./.github/hr.yml"}, mode: policy.Block, endpoints: 2},
		{name: "policy file mode only", in: map[string]string{"policy": "modeonly.yml", "egress-policy": "block"}, mode: policy.Audit},
		{name: "policy flow list", in: map[string]string{"policy": "flowlist.yml"}, mode: policy.Block, endpoints: 2},
		{name: "policy crlf", in: map[string]string{"policy": "crlf.yml"}, mode: policy.Audit, endpoints: 1},
		{name: "policy unknown key", in: map[string]string{"policy": "bad.yml"}, errs: []string{"policy"}, errText: `bad.yml:2: unknown key "foo"`},
		{name: "policy bad endpoint", in: map[string]string{"policy": "badendpoint.yml"}, errs: []string{"policy"}, errText: `badendpoint.yml:1: allowed-endpoints: entry "bad..name:443"`},
		{name: "policy bad mode", in: map[string]string{"policy": "badmode.yml"}, errs: []string{"policy"}, errText: `badmode.yml:1: egress-policy: "yes"`},
		{name: "policy duplicate", in: map[string]string{"policy": "duplicate.yml"}, errs: []string{"policy"}, errText: `duplicate.yml:2: mapping key "egress-policy" already defined at line 1`},
		{name: "policy tab", in: map[string]string{"policy": "tabindent.yml"}, errs: []string{"policy"}, errText: "tab"},
		{name: "policy continuation", in: map[string]string{"policy": "continuation.yml"}, errs: []string{"policy"}, errText: `continuation.yml:1: egress-policy: "audit block"`},
		{name: "policy missing", in: map[string]string{"policy": "nope.yml"}, errs: []string{"policy"}, errText: "nope.yml"},
		{name: "policy absolute", in: map[string]string{"policy": "/etc/passwd"}, errs: []string{"policy"}, errText: "relative"},
		{name: "policy escapes", in: map[string]string{"policy": "a/../../x.yml"}, errs: []string{"policy"}, errText: "inside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := ParseInputs(getter(tt.in), read)
			if len(tt.errs) > 0 {
				if err == nil {
					t.Fatalf("no error, want errors for %v", tt.errs)
				}
				var got []string
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var ie *InputError
					if !errors.As(e, &ie) {
						t.Fatalf("error %v is not an *InputError", e)
					}
					got = append(got, ie.Input)
					if !strings.Contains(e.Error(), "input "+ie.Input+": ") {
						t.Errorf("error %q does not name its input", e)
					}
				}
				if strings.Join(got, ",") != strings.Join(tt.errs, ",") {
					t.Errorf("errors for %v, want %v (%v)", got, tt.errs, err)
				}
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("error %q does not contain %q", err, tt.errText)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if in.Mode != tt.mode {
				t.Errorf("mode %q, want %q", in.Mode, tt.mode)
			}
			if len(in.Endpoints) != tt.endpoints {
				t.Errorf("%d endpoints (%v), want %d", len(in.Endpoints), in.Endpoints, tt.endpoints)
			}
			if tt.check != nil {
				tt.check(t, in)
			}
		})
	}
}

func FuzzPolicyFileInputs(f *testing.F) {
	for _, s := range []string{
		"egress-policy: block\nallowed-endpoints: >\n  a.test:443\n",
		"allowed-endpoints:\n  - 'x:1'\n  - \"y\"\n", "allowed-endpoints: [a, 'b']", "a: |\n\t#", "egress-policy: '",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, err := policyfile.Parse("p", data); err != nil {
			return
		}
		// Whatever parses must go through the input parser without panics.
		_, _ = ParseInputs(getter(map[string]string{"policy": "p"}), func(string) ([]byte, error) { return data, nil })
	})
}
