// Command vmtest boots kernels under qemu with the host's root shared
// read-only, the way virtme does, and runs commands or the kernel-facing test
// suite inside them; run as PID 1 it is the guest's init.
package main
