// Package fandir reports directory creation, rename and removal under the
// directories it tracks, from a fanotify notification group reporting
// directory file handles and names: unlike inotify, no per-watch limit.
package fandir
