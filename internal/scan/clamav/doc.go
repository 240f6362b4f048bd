// Package clamav is vigil's built-in scan engine: it reads ClamAV hash,
// PE section hash and body signature databases, matches body signatures
// on text files normalised too, as libclamav does, and always detects the
// EICAR test file.
package clamav
