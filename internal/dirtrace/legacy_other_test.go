//go:build !amd64

package dirtrace

import "errors"

// Other architectures have no mkdir and rename system calls.
const legacySyscalls = false

func sysMkdir(string) error          { return errors.New("no mkdir system call here") }
func sysRename(string, string) error { return errors.New("no rename system call here") }
