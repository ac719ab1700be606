// Package escape makes untrusted strings (DNS names, paths, command lines,
// error messages) safe to show: as one inert line of GitHub-flavoured
// markdown (Cell, Line), inside a code fence (Fence), in raw HTML
// (HTMLText), or in a GitHub Actions workflow command (Command,
// CommandData, CommandProperty). It is the project's only escaper: the
// report, the Action's notes and the binary's own error lines all use it.
// It is pure: no I/O, no package state.
//
// What a reader sees is the string itself: every printable character is
// shown as it is, byte for byte. Only what cannot be shown on one line is
// replaced by a visible stand-in (see Text), and a zero-width space follows
// every '@', which is invisible but keeps GitHub from turning the text into
// an @mention or an e-mail link (its mention filter runs on rendered text,
// where no markdown escape reaches).
package escape
