// Package features probes what the running kernel offers vigil.
package features
