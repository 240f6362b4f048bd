package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// kvmUsable probes KVM by doing: /dev/kvm opens, qemu creates a VM on it,
// and a guest boots on it to its init and reports. The last step matters:
// under nested virtualization a VM can be created whose vCPUs never get a
// Linux kernel far (on the machine this was written on, /dev/kvm runs
// SeaBIOS, yet qemu aborts with -cpu host on an MSR it cannot set, and with
// other CPU models every kernel hangs before its first line).
func kvmUsable(ctx context.Context, base vm) error {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return err
	}
	f.Close()
	ctx2, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// -machine none still creates the VM (KVM_CREATE_VM) when -accel kvm
	// initializes: quit at once from the monitor.
	cmd := exec.CommandContext(ctx2, base.Qemu, "-accel", "kvm", "-machine", "none", "-nodefaults", "-display", "none", "-monitor", "stdio")
	cmd.Stdin = strings.NewReader("quit\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("qemu -accel kvm: %v: %s", err, lastLine(string(out)))
	}
	probe := base
	probe.Accel = "kvm"
	probe.WorkDir = ""
	probe.Steps = nil // the init reports status 0 once its root is mounted
	probe.Output = nil
	// A kernel under working KVM reaches its init in a second or two.
	probe.Timeout = 30 * time.Second
	out, err := probe.Run(ctx)
	if err != nil {
		if len(out.Console) > 0 {
			return fmt.Errorf("boot %s: %w: %s", probe.Kernel.Name, err, out.Console[len(out.Console)-1])
		}
		return fmt.Errorf("boot %s: %w", probe.Kernel.Name, err)
	}
	if out.Status != 0 {
		return fmt.Errorf("boot %s: init reported status %d", probe.Kernel.Name, out.Status)
	}
	return nil
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
