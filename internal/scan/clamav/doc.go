// Package clamav is vigil's built-in scan engine: it reads ClamAV hash
// signature databases and always detects the EICAR test file.
package clamav
