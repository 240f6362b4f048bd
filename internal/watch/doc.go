// Package watch places fanotify marks on every directory of the watched trees.
package watch
