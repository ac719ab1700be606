package report

// JournalInfo says where the journal a report was built from came from;
// it is report.json's agent.journal.
type JournalInfo struct {
	// Verified: the journal came whole (length and SHA-256 checked) over
	// a channel no workflow step can write to (the post step's own stop
	// helper's output stream). False for a report built again from a file
	// (`harden-runner report`, `run`): then the file is the evidence.
	Verified bool   `json:"verified"`
	Via      string `json:"via,omitempty"`
	Bytes    int    `json:"bytes"`
	SHA256   string `json:"sha256,omitempty"`
	// Snapshot: taken while the agent went on enforcing; events after
	// the snapshot are not in the report.
	Snapshot bool `json:"snapshot"`
}
