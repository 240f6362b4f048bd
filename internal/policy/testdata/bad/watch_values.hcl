# want: 8:13 Invalid action | "block", "alert", "quarantine"
# want: 9:13 Invalid mode | "tree", "filesystem"
# want: 10:22 Invalid on | "open", "exec", "access"
# want: 11:14 Invalid exclude | malformed
# want: 11:26 Invalid exclude | ".."
# want: 12:19 Invalid max_file_size | Got "0"; the size must be positive.
watch "/srv" {
  action  = "kill"
  mode    = "fast"
  on      = ["open", "read"]
  exclude = ["[a", "ok", "../x"]
  max_file_size = "0"
}
watch "/home" {
  on = []
}
# want: 15:8 Invalid on | must not be empty
