package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path"
)

// planFile is where the initramfs holds the plan for the guest's init.
const planFile = "/vmtest.json"

// Mount tags of the two 9p shares.
const (
	tagRoot = "vmroot"
	tagWork = "vmwork"
)

// plan tells the guest's init what to set up and what to run.
type plan struct {
	Modules  []string // module files in the initramfs, in load order
	WorkDir  string   // the work tree, shared read-write at the same path; empty for none
	Tmpfs    []string // writable places over the read-only root
	Env      []string // the environment of every step
	Stage    []string // files copied into stageDir before the steps run
	Steps    []step   // run in order; all of them run
	ExitPort uint16   // isa-debug-exit's iobase
}

// stageDir is the guest's tmpfs the files of plan.Stage are copied into.
// The work tree is shared with cache=mmap, which keeps no page of a file
// once it is closed: a binary executed from there is read anew over 9p at
// each exec (vigil's 20 MB, 0.7-2 s under TCG, against 0.2-0.5 s from
// here), and the suite's tests execute vigil hundreds of times.
const stageDir = "/run/vmtest"

// staged is where the guest finds file of plan.Stage.
func staged(file string) string { return path.Join(stageDir, path.Base(file)) }

// step is one command the guest runs.
type step struct {
	Name string
	Dir  string
	Argv []string
}

func readPlan(file string) (*plan, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	p := new(plan)
	if err := json.Unmarshal(data, p); err != nil {
		return nil, fmt.Errorf("parse %s: %w", file, err)
	}
	return p, nil
}

// Markers the init prints on the console, one a line: the host reads them.
const (
	markerStep   = "vmtest: step "        // name, exit status and time of a step
	markerStatus = "vmtest: exit status " // the guest's status, also sent through isa-debug-exit
)

// statusCode is the byte the init writes to isa-debug-exit for a guest
// status; qemu then exits with code<<1|1. The byte is never 0: qemu's own
// exit code for its errors is 1, which must not read as a status.
func statusCode(status int) byte {
	if status < 0 || status > 126 {
		return 127
	}
	return byte(status + 1)
}

// initFailed is the status of an init that could not run the plan.
const initFailed = 126
