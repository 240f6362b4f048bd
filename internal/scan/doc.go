// Package scan defines the interface every scan engine implements.
package scan
