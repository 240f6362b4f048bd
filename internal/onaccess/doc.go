// Package onaccess answers fanotify permission events: every event gets
// exactly one response, within the policy's deadline.
package onaccess
