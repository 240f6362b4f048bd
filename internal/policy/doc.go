// Package policy turns an HCL policy file into a typed, validated Policy
// and answers which watch rule governs a path.
package policy
