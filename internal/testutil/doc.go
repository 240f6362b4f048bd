// Package testutil holds the helpers tests share: skips for missing
// privileges or kernel features, temporary directories and deadlines.
package testutil
