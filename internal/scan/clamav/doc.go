// Package clamav is vigil's built-in scan engine: it reads ClamAV hash,
// PE section hash and body signature databases and always detects the
// EICAR test file.
package clamav
