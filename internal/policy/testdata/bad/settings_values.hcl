# want: 8:20 Invalid workers | from 1 to 256
# want: 9:20 Invalid scan_timeout | positive duration
# want: 10:20 Invalid max_file_size | Got "10 parsecs"; a size such as
# want: 11:20 Invalid on_error | "allow", "deny"
# want: 12:20 Invalid control_socket | absolute path
# want: 13:20 Invalid alert_log | string is required, got number
settings {
  workers        = 0
  scan_timeout   = "5"
  max_file_size  = "10 parsecs"
  on_error       = "maybe"
  control_socket = "run/vigil.sock"
  alert_log      = 42
}
watch "/srv" {}
