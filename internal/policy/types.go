package policy

import (
	"time"

	"github.com/hashicorp/hcl/v2"
)

// Policy is a loaded, validated policy. It is immutable once returned by
// Load or Parse: the daemon swaps whole policies on reload.
type Policy struct {
	Filename string
	Engine   Engine
	Settings Settings
	// Watches sorted by Path, longest first within a shared prefix, so the
	// first covering watch is the longest match.
	Watches []*Watch
	Exclude Exclude

	ix *index // built by Parse; nil for literals
}

// EngineKind names a scan engine.
type EngineKind string

const (
	EngineBuiltin EngineKind = "builtin"
	EngineClamd   EngineKind = "clamd"
)

// Engine selects and configures the scan engine.
type Engine struct {
	Kind      EngineKind
	Databases []string // builtin: files or directories of ClamAV databases
	// VerifySignatures: builtin: check .cvd containers against ClamAV's
	// key (false for containers built locally).
	VerifySignatures bool
	Address          string        // clamd: unix:///path or tcp://host:port
	Timeout          time.Duration // clamd: per-request timeout (0: scan_timeout)
	Range            hcl.Range
}

// Action is what a watch does with an infected file.
type Action string

const (
	ActionBlock      Action = "block"
	ActionAlert      Action = "alert"
	ActionQuarantine Action = "quarantine"
)

// OnError is the verdict given when a scan cannot decide.
type OnError string

const (
	OnErrorAllow OnError = "allow"
	OnErrorDeny  OnError = "deny"
)

// Mode is how a watch places its marks.
type Mode string

const (
	ModeTree       Mode = "tree"
	ModeFilesystem Mode = "filesystem"
)

// Events is a set of the file operations a watch intercepts.
type Events uint8

const (
	EventOpen Events = 1 << iota
	EventExec
	EventAccess
)

// Settings are daemon-wide knobs.
type Settings struct {
	Workers       int
	ScanTimeout   time.Duration
	MaxFileSize   int64 // bytes; larger files are not scanned
	OnError       OnError
	ControlSocket string
	AlertLog      string
	MetricsListen string // loopback host:port for Prometheus; "" is off
	QuarantineDir string // where action "quarantine" moves infected files
	// IgnoreOutOfScope quiets filesystem-mode marks: a directory outside
	// every watch whose file was opened gets an evictable ignore mark, so
	// its files stop reaching vigil. Off by default: a directory moved
	// from outside into a watch keeps its mark until vigil sees the move
	// and removes it, and an open in that window is not scanned. Needs
	// FAN_MARK_IGNORE (6.0), FAN_MARK_EVICTABLE (5.19) and
	// FAN_REPORT_DFID_NAME (5.9); without them the setting does nothing.
	IgnoreOutOfScope bool
}

// Watch is one watch block: a tree and what happens in it.
type Watch struct {
	Path        string // absolute, cleaned
	Action      Action
	Recursive   bool
	Mode        Mode
	On          Events
	Exclude     []string  // globs relative to Path
	OnError     OnError   // settings.on_error unless overridden
	MaxFileSize int64     // settings.max_file_size unless overridden
	Range       hcl.Range // the label

	globs Excludes // Exclude, compiled by Parse
}

// Exclude lists processes whose accesses are never scanned.
type Exclude struct {
	UIDs     []uint32
	Programs []string // absolute executable paths
}
