// Package inotify reports directory creation, rename and removal under the
// directories it tracks, from an inotify instance.
package inotify
