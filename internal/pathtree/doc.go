// Package pathtree keeps the tracked directories of a source of directory
// events as a tree of path components, each tracked one with its key.
package pathtree
