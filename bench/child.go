package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// childEnv makes the bench binary a helper process instead of the bench:
// an opener of the storm, or a database loader measured on its own. It is
// read in init, before main parses flags.
const childEnv = "VIGIL_BENCH_CHILD"

// children are the helper roles, by the value of childEnv. Each returns
// the exit code; its argument comes from childArgEnv.
var children = map[string]func(arg string) int{}

// helper registers a role. Call it in a package-level var declaration:
// those all run before init, which dispatches.
func helper(role string, f func(arg string) int) bool {
	children[role] = f
	return true
}

const childArgEnv = "VIGIL_BENCH_CHILD_ARG"

func init() {
	role := os.Getenv(childEnv)
	if role == "" {
		return
	}
	f := children[role]
	if f == nil {
		fmt.Fprintf(os.Stderr, "bench: %s=%q: no such helper\n", childEnv, role)
		os.Exit(2)
	}
	os.Exit(f(os.Getenv(childArgEnv)))
}

// child returns a command running the bench binary itself as role, killed
// with the bench (Pdeathsig).
func child(role, arg string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the bench binary: %w", err)
	}
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), childEnv+"="+role, childArgEnv+"="+arg)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, nil
}
