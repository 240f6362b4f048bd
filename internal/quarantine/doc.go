// Package quarantine keeps infected files in a root-only store with a JSON record each, and gives them back or deletes them.
package quarantine
