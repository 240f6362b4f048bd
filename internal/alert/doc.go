// Package alert writes one JSON line per verdict that matters to the alert log.
package alert
