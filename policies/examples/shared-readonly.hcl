# A shared folder served by a long-running file server that keeps files
# open: a file changed after it was opened would never be scanned on open
# alone. "access" also scans on read. It costs more (every read(2) asks for
# a verdict, answered from the clean cache until the file changes), so it
# is used only on this one tree, and only to alert.

settings {
  scan_timeout  = "2s"
  max_file_size = "20MB"
}

watch "/srv/share" {
  action  = "alert"
  on      = ["open", "access"]
  exclude = ["**/.snapshot", "*.lock"]
}
