// Package policyfile parses harden-runner's policy file: the egress
// settings kept in the repository (the Action's `policy` input) or given
// to `harden-runner run --policy FILE`, one format and one parser for both.
//
//	# .github/harden-runner.yml
//	egress-policy: block
//	allowed-endpoints:
//	  - github.com:443
//	  - "*.npmjs.org:443"
//
// allowed-endpoints may also be one string (entries separated by white
// space or commas, any YAML scalar style, e.g. a `>` block). The file is
// YAML read in strict mode by a maintained library (go.yaml.in/yaml/v3):
// unknown keys, repeated keys, values of the wrong kind and bad entries
// are errors that name the file, the line and the value. The package is
// pure: Parse does no I/O.
package policyfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/harden-runner/harden-runner/egress/policy"
)

// MaxSize caps a policy file's size: 100,000 entries of cloud ranges are
// about 2.5 MiB, far past what one command-line argument (128 KiB) holds.
const MaxSize = 16 << 20

// File is a parsed policy file. The zero value sets nothing.
type File struct {
	// EgressPolicy is the mode the file sets, "audit" or "block" in lower
	// case however the file spells it; "" when it sets none.
	EgressPolicy string
	// AllowedEndpoints is the entries as written, one per line ("" when
	// unset), for callers that merge them with other input text.
	AllowedEndpoints string
	// Endpoints is the same entries parsed (policy.ParseEndpoints).
	Endpoints []policy.Endpoint
}

// Error is a problem in a policy file, at a line (0: the whole file).
// Err's text names the offending value.
type Error struct {
	File string // as the caller named it
	Line int
	Err  error
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("policy file %s:%d: %v", e.File, e.Line, e.Err)
	}
	return fmt.Sprintf("policy file %s: %v", e.File, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// doc is the file's schema; KnownFields rejects any other key.
type doc struct {
	EgressPolicy     yaml.Node `yaml:"egress-policy"`
	AllowedEndpoints yaml.Node `yaml:"allowed-endpoints"`
}

// Parse parses a policy file's content; name is only used in errors.
func Parse(name string, data []byte) (*File, error) {
	fail := func(line int, err error) (*File, error) {
		return nil, &Error{File: name, Line: line, Err: err}
	}
	if len(data) > MaxSize {
		return fail(0, fmt.Errorf("%d bytes, more than %d", len(data), MaxSize))
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var d doc
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return &File{}, nil // empty, or only comments
		}
		return nil, yamlError(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return fail(extra.Line, errors.New("more than one YAML document (a second ---)"))
	}
	f := &File{}
	if n := &d.EgressPolicy; n.Kind != 0 {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!str" && n.Tag != "!!null" {
			return fail(n.Line, errors.New(`egress-policy: want "audit" or "block"`))
		}
		m, err := policy.ParseMode(n.Value)
		if err != nil {
			return fail(n.Line, err)
		}
		f.EgressPolicy = string(m) // as the input is spelled: "BLOCK" is block

	}
	if n := &d.AllowedEndpoints; n.Kind != 0 {
		var entries []string
		var lines []int
		switch n.Kind {
		case yaml.ScalarNode:
			if n.Tag != "!!null" {
				entries, lines = append(entries, n.Value), append(lines, n.Line)
			}
		case yaml.SequenceNode:
			for _, item := range n.Content {
				if item.Kind != yaml.ScalarNode || item.Tag != "!!str" {
					return fail(item.Line, errors.New(`allowed-endpoints: want a "host:port" entry`))
				}
				entries, lines = append(entries, item.Value), append(lines, item.Line)
			}
		default:
			return fail(n.Line, errors.New(`allowed-endpoints: want a list of "host:port" entries or one string of them`))
		}
		// A quoted YAML string may spell a control character as an escape
		// ("\f"), which the file itself may not hold: refused alike.
		for i, e := range entries {
			if j := strings.IndexFunc(e, isControl); j >= 0 {
				return fail(lines[i], fmt.Errorf("allowed-endpoints: control character %q in an entry", e[j]))
			}
		}
		f.AllowedEndpoints = strings.Join(entries, "\n")
		eps, err := policy.ParseEndpoints(f.AllowedEndpoints)
		if err != nil {
			// Name each bad entry with its line (the slow path: one
			// parse per entry, only when something is wrong).
			var errs []error
			for i, e := range entries {
				if _, err := policy.ParseEndpoints(e); err != nil {
					errs = append(errs, &Error{File: name, Line: lines[i], Err: err})
				}
			}
			if len(errs) == 0 { // cannot happen: entries do not interact
				return fail(n.Line, err)
			}
			return nil, errors.Join(errs...)
		}
		f.Endpoints = eps
	}
	return f, nil
}

// yamlError turns the library's error ("yaml: line N: ...", or a list of
// them) into Errors with the file and line, naming unknown keys plainly.
func yamlError(name string, err error) error {
	msgs := []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	}
	var errs []error
	for _, m := range msgs {
		e := &Error{File: name}
		if rest, ok := strings.CutPrefix(m, "line "); ok {
			if n, after, ok := strings.Cut(rest, ": "); ok {
				if l, err := strconv.Atoi(n); err == nil {
					e.Line, m = l, after
				}
			}
		}
		if key, ok := strings.CutPrefix(m, "field "); ok {
			if key, ok = strings.CutSuffix(key, " not found in type policyfile.doc"); ok {
				m = fmt.Sprintf("unknown key %q (want egress-policy or allowed-endpoints)", key)
			}
		}
		e.Err = errors.New(m)
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// isControl reports a control character other than the tab and newline a
// list of entries may be written with.
func isControl(r rune) bool {
	return r != '\t' && r != '\n' && (r < 0x20 || r == 0x7f || r >= 0x80 && r < 0xa0)
}
