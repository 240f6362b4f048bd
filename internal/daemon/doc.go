// Package daemon wires policy, engine, watches and the permission loop
// into the running vigil service.
package daemon
