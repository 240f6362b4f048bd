// Package metrics exports vigil's counters in the Prometheus format, read from the daemon at scrape time.
package metrics
