package settings

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/harden-runner/harden-runner/dockergate"
	"github.com/harden-runner/harden-runner/egress/policy"
)

func getter(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

var files = map[string]string{
	"block.yml":  "egress-policy: block\nallowed-endpoints:\n  - a.test:443\n  - 198.18.1.0/24:22\n",
	"audit.yml":  "egress-policy: audit\nallowed-endpoints: c.test:443\n",
	"nomode.yml": "allowed-endpoints: b.test:443\n",
	"bad.yml":    "egress-policy: block\nallowed-endpoints:\n  - a.test:443\n  - b.test:99999\n",
}

func readFile(name string) ([]byte, error) {
	s, ok := files[name]
	if !ok {
		return nil, os.ErrNotExist
	}
	return []byte(s), nil
}

func endpoints(s *Settings) string {
	var out []string
	for _, e := range s.Endpoints {
		out = append(out, e.String())
	}
	return strings.Join(out, " ")
}

// TestParse: each source's defaults, the policy file's merge rules, and
// every bad setting named with its value.
func TestParse(t *testing.T) {
	for _, tt := range []struct {
		name  string
		src   Source
		in    map[string]string
		check func(t *testing.T, s *Settings)
		errs  []string // names in the errors, in order
		text  string   // in the joined error
	}{
		{name: "inputs defaults", src: Inputs, in: map[string]string{}, check: func(t *testing.T, s *Settings) {
			want := Settings{Mode: policy.Block, FileMonitoring: true, AllowDockerFor: dockergate.AllowRunner, TamperFails: true}
			if !reflect.DeepEqual(*s, want) {
				t.Errorf("%+v, want %+v", *s, want)
			}
		}},
		{name: "flags defaults", src: Flags, in: map[string]string{}, check: func(t *testing.T, s *Settings) {
			want := Settings{Mode: policy.Audit, FileMonitoring: true, AllowDockerFor: dockergate.AllowRunner, TamperFails: true}
			if !reflect.DeepEqual(*s, want) {
				t.Errorf("%+v, want %+v", *s, want)
			}
		}},
		{name: "everything", src: Flags, in: map[string]string{"egress-policy": "Block", "allowed-endpoints": "b.test:443, a.test:443 b.test:443",
			"disable-containers": "true", "allow-docker-for": "containers", "disable-file-monitoring": "true", "on-tamper": "report",
			"github-runner-endpoints": "false", "upstream": "198.18.0.2,[2001:db8::53]:5353"},
			check: func(t *testing.T, s *Settings) {
				want := Settings{Mode: policy.Block, NoRunnerEndpoints: true, DisableContainers: true, AllowDockerFor: dockergate.AllowContainers,
					Upstreams: []netip.AddrPort{netip.MustParseAddrPort("198.18.0.2:53"), netip.MustParseAddrPort("[2001:db8::53]:5353")}}
				got := *s
				got.Endpoints = nil
				if !reflect.DeepEqual(got, want) || endpoints(s) != "a.test:443 b.test:443" {
					t.Errorf("%+v %s, want %+v", got, endpoints(s), want)
				}
			}},
		{name: "disable-sudo-and-containers implies disable-sudo", src: Inputs, in: map[string]string{"disable-sudo-and-containers": "TRUE"},
			check: func(t *testing.T, s *Settings) {
				if !s.DisableSudo || !s.DisableContainers {
					t.Errorf("%+v", s)
				}
			}},
		{name: "a source ignores the other's settings", src: Inputs, in: map[string]string{"disable-containers": "true", "upstream": "x", "on-tamper": "x"},
			check: func(t *testing.T, s *Settings) {
				if s.DisableContainers || s.Upstreams != nil || !s.TamperFails {
					t.Errorf("%+v", s)
				}
			}},
		{name: "inputs: the file's mode wins", src: Inputs, in: map[string]string{"policy": "audit.yml", "egress-policy": "block", "allowed-endpoints": "x.test:443"},
			check: func(t *testing.T, s *Settings) {
				if s.Mode != policy.Audit || endpoints(s) != "c.test:443 x.test:443" || s.PolicyFile != "audit.yml" {
					t.Errorf("%+v", s)
				}
			}},
		{name: "flags: union, file's mode", src: Flags, in: map[string]string{"policy": "block.yml", "allowed-endpoints": "c.test:443 a.test:443"},
			check: func(t *testing.T, s *Settings) {
				if s.Mode != policy.Block || endpoints(s) != "a.test:443 c.test:443 198.18.1.0/24:22" {
					t.Errorf("%s %s", s.Mode, endpoints(s))
				}
			}},
		{name: "flags: same mode twice", src: Flags, in: map[string]string{"policy": "block.yml", "egress-policy": "block"},
			check: func(t *testing.T, s *Settings) {
				if s.Mode != policy.Block {
					t.Errorf("mode %s", s.Mode)
				}
			}},
		{name: "flags: file without mode", src: Flags, in: map[string]string{"policy": "nomode.yml"},
			check: func(t *testing.T, s *Settings) {
				if s.Mode != policy.Audit || endpoints(s) != "b.test:443" {
					t.Errorf("%s %s", s.Mode, endpoints(s))
				}
			}},
		{name: "flags: modes disagree", src: Flags, in: map[string]string{"policy": "block.yml", "egress-policy": "audit"},
			errs: []string{"egress-policy"}, text: `--egress-policy "audit": disagrees with the egress-policy "block" of --policy block.yml`},
		{name: "bad mode", src: Inputs, in: map[string]string{"egress-policy": "strict"}, errs: []string{"egress-policy"}, text: `input egress-policy: "strict": want "audit" or "block"`},
		{name: "bad endpoint", src: Flags, in: map[string]string{"allowed-endpoints": "github.com:99999"}, errs: []string{"allowed-endpoints"}, text: `--allowed-endpoints "github.com:99999"`},
		{name: "bad file entry", src: Flags, in: map[string]string{"policy": "bad.yml"}, errs: []string{"policy"}, text: `bad.yml:4: allowed-endpoints: entry "b.test:99999"`},
		{name: "missing file", src: Inputs, in: map[string]string{"policy": "nope.yml"}, errs: []string{"policy"}, text: "file does not exist"},
		{name: "bad upstream", src: Flags, in: map[string]string{"upstream": "198.18.0.2 not-an-ip"}, errs: []string{"upstream"}, text: "not-an-ip"},
		{name: "bad tamper", src: Flags, in: map[string]string{"on-tamper": "maybe"}, errs: []string{"on-tamper"}, text: `--on-tamper "maybe": want fail or report`},
		{name: "all at once", src: Inputs, in: map[string]string{"egress-policy": "x", "disable-sudo": "yes", "allow-docker-for": "everyone", "tamper-policy": "no", "disable-file-monitoring": "1"},
			errs: []string{"egress-policy", "disable-sudo", "disable-file-monitoring", "allow-docker-for", "tamper-policy"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.src, getter(tt.in), readFile)
			if len(tt.errs) == 0 {
				if err != nil {
					t.Fatal(err)
				}
				if err := s.Check(); err != nil {
					t.Errorf("Check: %v", err)
				}
				tt.check(t, s)
				return
			}
			if err == nil || s != nil {
				t.Fatalf("settings %+v, error %v; want errors for %v", s, err, tt.errs)
			}
			var got []string
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ie *InputError
				if !errors.As(e, &ie) {
					t.Fatalf("error %v is not an *InputError", e)
				}
				got = append(got, ie.Input)
			}
			if strings.Join(got, ",") != strings.Join(tt.errs, ",") {
				t.Errorf("errors for %v, want %v (%v)", got, tt.errs, err)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("error %q does not contain %q", err, tt.text)
			}
		})
	}
}

// TestCheck: decoded values no parse gives are refused; an unknown mode
// in particular, which would otherwise be enforced as audit.
func TestCheck(t *testing.T) {
	for _, js := range []string{
		`{"egress_policy":"blok"}`,
		`{"egress_policy":""}`,
		`{"egress_policy":"block","allow_docker_for":"everyone"}`,
		`{"egress_policy":"block","upstreams":["198.18.0.2:0"]}`,
	} {
		var s Settings
		if err := json.Unmarshal([]byte(js), &s); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		if err := s.Check(); err == nil {
			t.Errorf("%s: accepted", js)
		}
	}
}

// FuzzParse: any text either parses into Settings that pass Check and
// come back equal through JSON (as the daemon gets them), or is refused
// with errors that each name a setting; never a panic.
func FuzzParse(f *testing.F) {
	f.Add(false, "block", "github.com:443 *.x.test:443 198.18.0.0/15:22 [2001:db8::/32]:443", "egress-policy: audit\nallowed-endpoints: [a.test:443]\n", "true", "containers", "198.18.0.2", "report")
	f.Add(true, "audit", "", "", "", "", "", "")
	f.Add(true, "x", "bad..name:443", "foo: bar\n", "yes", "everyone", "not-an-ip", "maybe")
	f.Fuzz(func(t *testing.T, flags bool, mode, eps, file, b, allowFor, upstream, tamper string) {
		src := Inputs
		if flags {
			src = Flags
		}
		in := map[string]string{EgressPolicy: mode, AllowedEndpoints: eps, DisableFileMonitoring: b, DisableSudo: b, DisableContainers: b,
			AllowDockerFor: allowFor, Upstream: upstream, src.Name(TamperPolicy): tamper}
		if file != "" {
			in[Policy] = "p.yml"
		}
		s, err := Parse(src, getter(in), func(string) ([]byte, error) { return []byte(file), nil })
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				var ie *InputError
				if !errors.As(e, &ie) || ie.Input == "" {
					t.Fatalf("error %v names no setting", e)
				}
			}
			return
		}
		if err := s.Check(); err != nil {
			t.Fatalf("Parse gave settings that fail Check: %v", err)
		}
		js, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		var back Settings
		if err := json.Unmarshal(js, &back); err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		if !reflect.DeepEqual(&back, s) {
			t.Fatalf("through JSON %s:\n%+v\nwant\n%+v", js, back, *s)
		}
	})
}
