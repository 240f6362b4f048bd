// Package verdict remembers which files were found clean, so that an
// unchanged file is not scanned again under the same signatures.
package verdict
