// Package fanotify is a thin typed wrapper over the fanotify system calls.
package fanotify
