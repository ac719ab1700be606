// Package journal is the agent's record of a run: one event.Record per
// line of JSON, appended by the agent (Writer), carried to the post step
// as an export stream whose length and SHA-256 are checked (WriteExport,
// ReadExport), and read back by whoever builds the report (Read).
//
// The records themselves stay in package event. Every component emits
// them on its hot path through an event.Emit and imports nothing but
// event; moving the types here would make every producer import the
// journal's file and stream code for the sake of a struct. So event is the
// schema (a leaf package) and journal is the framing: how the records are
// written, checked and read.
package journal
