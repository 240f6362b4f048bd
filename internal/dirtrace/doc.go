// Package dirtrace reports directories made and renamed under the tracked directories, from eBPF programs on the best hook the kernel offers.
package dirtrace
